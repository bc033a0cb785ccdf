"""The one evaluator: score restored images against references, summarise, compare, write CSV.

Used by ``monai-tat evaluate`` (files and folders) and by the bundles' evaluation report, so a
table printed anywhere in the package is computed the same way: every 2D slice (3D volumes along
their axial axis) scored with :func:`~monai_tat.metrics.slice_metrics` in the papers' convention,
means over all slices as the papers' tables.

Example::

    from monai_tat.metrics.evaluator import SliceScores, score_files
    scores = SliceScores()
    scores.add("case1", score_files("pred.nii.gz", "ref.nii.gz", "ct"))
    scores.summary()["psnr"]
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_tat.errors import UserInputError
from monai_tat.metrics.image_quality import METRIC_NAMES, slice_metrics, summarize
from monai_tat.metrics.statistics import PairedComparison, paired_comparison

__all__ = ["SliceScores", "score_volumes", "score_files", "write_rows_csv"]


def score_volumes(pred: Any, ref: Any, task: str, axis: int | None = None,
                  names: tuple[str, str] = ("the prediction", "the reference")) -> dict[str, np.ndarray]:
    """Per-slice PSNR / SSIM / RMSE of ``pred`` against ``ref`` (MetaTensors or arrays, physical units).

    Args:
        pred, ref: 2D ``(H, W)`` or 3D ``(I, J, K)`` images of the same shape.
        task: selects the evaluation window (:mod:`monai_tat.tasks`).
        axis: slicing axis of 3D images; default the axial axis of ``ref``'s affine (last axis
            for plain arrays).
        names: how errors name the two images.

    Returns:
        ``{"psnr", "ssim", "rmse"}``: one value per slice.
    """
    from monai_tat.io import axial_axis

    if tuple(np.shape(pred)) != tuple(np.shape(ref)):
        raise UserInputError(f"the prediction has shape {tuple(np.shape(pred))} but the reference {tuple(np.shape(ref))}")
    if np.ndim(ref) == 3 and axis is None:
        affine = getattr(ref, "affine", None)
        axis = axial_axis(np.asarray(affine), 3) if affine is not None else -1
    return slice_metrics(_numpy(pred), _numpy(ref), task, axis=axis if axis is not None else -1, names=names)


def score_files(pred_path: str | Path, ref_path: str | Path, task: str, axis: int | None = None) -> dict[str, np.ndarray]:
    """:func:`score_volumes` of two image files (read with :func:`monai_tat.io.read_volume`)."""
    from monai_tat.io import read_volume

    pred, ref = read_volume(pred_path), read_volume(ref_path)
    if tuple(pred.shape) != tuple(ref.shape):
        raise UserInputError(f"{pred_path} has shape {tuple(pred.shape)} but {ref_path} has {tuple(ref.shape)}")
    return score_volumes(pred, ref, task, axis, names=(str(pred_path), str(ref_path)))


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


@dataclass
class SliceScores:
    """Per-image summaries and the pooled per-slice values of one method (optionally a baseline).

    ``add(name, values, baseline_values)`` keeps a row per image; :meth:`summary` is the mean over
    all slices pooled; :meth:`comparison` is the paired t-test of method against baseline over the
    same slices.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    pooled: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRIC_NAMES})
    pooled_baseline: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRIC_NAMES})

    def add(self, name: str, values: Mapping[str, np.ndarray], baseline: Mapping[str, np.ndarray] | None = None,
            **extra: Any) -> dict[str, Any]:
        """Record one image's per-slice values (and its baseline's); return its summary row."""
        row = {"image": name, **extra, **summarize(values)}
        for m in METRIC_NAMES:
            self.pooled[m].extend(np.asarray(values[m], dtype=np.float64).tolist())
        if baseline is not None:
            row.update({f"baseline_{k}": v for k, v in summarize(baseline).items() if k in METRIC_NAMES})
            for m in METRIC_NAMES:
                self.pooled_baseline[m].extend(np.asarray(baseline[m], dtype=np.float64).tolist())
        self.rows.append(row)
        return row

    @classmethod
    def merged(cls, parts: Sequence[SliceScores]) -> SliceScores:
        """One record of several (e.g. every process's share of a distributed evaluation): rows and
        pooled slices concatenated in order, so each slice stays paired with its baseline."""
        merged = cls()
        for part in parts:
            merged.rows.extend(part.rows)
            for m in METRIC_NAMES:
                merged.pooled[m].extend(part.pooled[m])
                merged.pooled_baseline[m].extend(part.pooled_baseline[m])
        return merged

    @property
    def has_baseline(self) -> bool:
        return bool(self.pooled_baseline[METRIC_NAMES[0]])

    def summary(self) -> dict[str, Any]:
        """The mean row over all slices pooled (``image`` = "mean")."""
        mean = {"image": "mean", **summarize(self.pooled)}
        if self.has_baseline:
            mean.update({f"baseline_{k}": v for k, v in summarize(self.pooled_baseline).items() if k in METRIC_NAMES})
        return mean

    def comparison(self) -> dict[str, PairedComparison]:
        """Method minus baseline per metric, paired over slices (needs a baseline)."""
        if not self.has_baseline:
            raise UserInputError("no baseline images were scored, so there is nothing to compare with")
        return {m: paired_comparison(self.pooled[m], self.pooled_baseline[m]) for m in METRIC_NAMES}

    def write_csv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Per-image rows and the mean row (image, slices, psnr, ssim, rmse[, baseline_*]), atomically."""
        fields = ["image", "slices", *METRIC_NAMES]
        if self.has_baseline:
            fields += [f"baseline_{m}" for m in METRIC_NAMES]
        rows = [{**row, "slices": row["n"]} for row in [*self.rows, self.summary()]]
        return write_rows_csv(path, fields, rows, overwrite=overwrite)


def write_rows_csv(path: str | Path, fields: Sequence[str], rows: Sequence[Mapping[str, Any]], *,
                   overwrite: bool = False) -> Path:
    """Write dict rows (extra keys ignored) under a header of ``fields`` with the package's atomic writer."""
    from monai_tat.io import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write, overwrite=overwrite)
