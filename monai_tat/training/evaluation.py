"""Whole-volume evaluation and restoration of a datalist, through the same engine as the CLI.

Both go through ``monai_tat.inference.restore_volume`` (normalise, slice, batch, restore, return to
HU / SUV / MRI units), so validation during training, ``evaluate.json``, ``inference.json``, the
``monai-tat`` command and the Slicer module all restore images identically.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.io import atomic_write, image_suffix, read_volume, write_volume
from monai_tat.metrics import METRIC_NAMES, slice_metrics, summarize
from monai_tat.training.data import volume_slice_axis

__all__ = ["DatalistEvaluator", "restore_datalist", "output_path_for"]

logger = logging.getLogger(__name__)


def _restore(network: nn.Module, image: torch.Tensor, task: str, device: Any, batch_size: int | None, axis: int | None):
    # Imported here: the inference engine is the heavier dependency and only needed at run time.
    from monai_tat.inference import restore_volume

    # restore_volume runs the network in eval mode and gives it back in its previous mode.
    return restore_volume(image, network, task, device=device, batch_size=batch_size, axis=axis)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write, overwrite=True)


class DatalistEvaluator:
    """PSNR / SSIM / RMSE per task of a network on paired volumes, in the papers' convention.

    Each LQ volume is restored whole; every slice along the restoration axis is compared with the
    HQ slice in physical units (``monai_tat.metrics.slice_metrics``: clipped to the task's
    evaluation window, data range from the label). Results go to ``<output_dir>/<tag>_metrics.csv``
    (one row per slice: image, label, task, slice, psnr, ssim, rmse) and ``<tag>_summary.csv``
    (one row per task: means over slices as in the papers' tables).

    Calling the evaluator returns a score for model selection: the mean over tasks of the
    ``key_metric`` mean (PSNR by default; higher is better).

    Args:
        data: items with ``image`` (LQ), ``label`` (HQ) and ``task`` (see ``load_datalist``).
        output_dir: folder for the CSV files.
        device: device for restoration ("auto", "cpu", "cuda:0", ...).
        batch_size: slices per forward pass (None: the engine's default).
        axis: restoration axis of 3D volumes (None: the axial axis, as the CLI).
        cache: keep the volumes in memory between calls (validation runs many times).
        key_metric: "psnr" or "ssim" for the score.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        output_dir: str | os.PathLike,
        device: Any = "auto",
        batch_size: int | None = None,
        axis: int | None = None,
        cache: bool = True,
        key_metric: str = "psnr",
    ) -> None:
        if key_metric not in ("psnr", "ssim"):
            raise ValueError(f"key_metric must be 'psnr' or 'ssim' (higher is better), got {key_metric!r}.")
        self.data = [dict(d) for d in data]
        self.output_dir = Path(output_dir)
        self.device, self.batch_size, self.axis = device, batch_size, axis
        self.cache, self.key_metric = cache, key_metric
        self._volumes: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _pair(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if n in self._volumes:
            return self._volumes[n]
        item = self.data[n]
        pair = (read_volume(item["image"]), read_volume(item["label"]))
        if self.cache:
            self._volumes[n] = pair
        return pair

    @torch.no_grad()
    def evaluate(self, network: nn.Module, tag: str = "evaluation") -> dict[str, dict[str, float]]:
        """Restore every item and return ``{task: {"psnr", "ssim", "rmse", "n", "n_skipped"}}``."""
        rows: list[list[Any]] = []
        per_task: dict[str, dict[str, list[float]]] = {}
        for n, item in enumerate(self.data):
            lq, hq = self._pair(n)
            axis = volume_slice_axis(lq, self.axis)
            pred = _restore(network, lq, item["task"], self.device, self.batch_size, axis)
            values = slice_metrics(pred, hq, item["task"], axis=axis if axis is not None else -1)
            store = per_task.setdefault(item["task"], {m: [] for m in METRIC_NAMES})
            for i in range(len(values["psnr"])):
                metrics = [float(values[m][i]) for m in METRIC_NAMES]
                rows.append([item["image"], item["label"], item["task"], i, *metrics])
                for m in METRIC_NAMES:
                    store[m].append(float(values[m][i]))
        summary = {task: summarize(v) for task, v in per_task.items()}
        _write_csv(self.output_dir / f"{tag}_metrics.csv", ["image", "label", "task", "slice", *METRIC_NAMES], rows)
        _write_csv(
            self.output_dir / f"{tag}_summary.csv",
            ["task", "n", "n_skipped", *METRIC_NAMES],
            [[t, s["n"], s["n_skipped"]] + [s[m] for m in METRIC_NAMES] for t, s in summary.items()],
        )
        for task, s in summary.items():
            logger.info(
                "%s %s: PSNR %.4f dB  SSIM %.4f  RMSE %.4f  (%d slices)",
                tag, task, s["psnr"], s["ssim"], s["rmse"], s["n"],
            )
        return summary

    def score(self, summary: Mapping[str, Mapping[str, float]]) -> float:
        """Mean over tasks of the key metric; NaN tasks (no valid slice) are left out."""
        values = [s[self.key_metric] for s in summary.values() if not math.isnan(s[self.key_metric])]
        return sum(values) / len(values) if values else -math.inf

    def __call__(self, network: nn.Module, tag: str = "evaluation") -> float:
        return self.score(self.evaluate(network, tag))


def output_path_for(
    image: str | os.PathLike, output_dir: str | os.PathLike, base_dir: str | os.PathLike | None = None,
    postfix: str = "_restored", suffix: str = ".nii.gz",
) -> Path:
    """``output_dir/<path of image relative to base_dir, or its name><postfix><suffix>``.

    Keeping the relative path avoids collisions between e.g. ``L067/quarter.nii.gz`` and ``L096/quarter.nii.gz``.
    """
    src = Path(image)
    rel = Path(src.name)
    if base_dir is not None:
        try:
            rel = src.resolve().relative_to(Path(base_dir).resolve())
        except ValueError:
            pass
    name = rel.name
    source_suffix = image_suffix(name)
    stem = name[: -len(source_suffix)] if source_suffix and name.lower().endswith(source_suffix) else name
    return Path(output_dir) / rel.parent / f"{stem}{postfix}{suffix}"


@torch.no_grad()
def restore_datalist(
    network: nn.Module,
    data: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    base_dir: str | os.PathLike | None = None,
    device: Any = "auto",
    batch_size: int | None = None,
    axis: int | None = None,
    postfix: str = "_restored",
    suffix: str = ".nii.gz",
    overwrite: bool = True,
) -> list[Path]:
    """Restore each item's ``image`` with ``monai_tat.inference.restore_volume`` and write it.

    Outputs are in HU / SUV / MRI units on the input's grid and geometry, written atomically to
    :func:`output_path_for` (the input is never overwritten).

    Returns:
        the written paths, in datalist order.
    """
    outputs = [output_path_for(d["image"], output_dir, base_dir, postfix, suffix) for d in data]
    duplicates = sorted({str(p) for p in outputs if outputs.count(p) > 1})
    if duplicates:
        raise UserInputError(
            f"several inputs map to the same output {duplicates}; pass base_dir so relative paths are kept."
        )
    for item, out in zip(data, outputs):
        if out.resolve() == Path(item["image"]).resolve():
            raise UserInputError(f"output {out} would overwrite the input; choose another output_dir or postfix.")
        image = read_volume(item["image"])
        pred = _restore(network, image, item["task"], device, batch_size, axis)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_volume(pred, out, overwrite=overwrite)
        logger.info("restored %s (%s) -> %s", item["image"], item["task"], out)
    return outputs
