"""The papers' image-quality convention inside MONAI workflows: a metric, its handler, and a report.

- :class:`PaperPSNRMetric`: a MONAI ``CumulativeIterationMetric``; per image, the mean over its 2D
  slices of PSNR in physical units after clipping to the task's evaluation window, data range from
  the label slice (:func:`monai_tat.metrics.psnr`).
- :class:`PaperPSNR`: its ignite handler for ``SupervisedEvaluator``'s ``key_val_metric``; each
  item's task comes from the batch (``task`` key).
- :class:`RestorationReport`: an evaluation handler scoring every slice of the restored image and
  of the input against the label (PSNR / SSIM / RMSE), writing per-image rows and per-task means
  with the paired t-test of restored against input (:func:`monai_tat.metrics.paired_comparison`).

Predictions, labels and inputs must be in physical units (as the ``RestorationInferer`` returns
them, or ``Invertd`` after a model-range mapping), channel-first ``(1, H, W)`` or
``(1, I, J, K)``; 3D images are sliced along the axial axis of their affine, as the restoration
engine slices them.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler, from_engine
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, min_version, optional_import

from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS, check_task
from monai_tat.metrics.image_quality import METRIC_NAMES, psnr, slice_metrics
from monai_tat.metrics.evaluator import SliceScores, write_rows_csv

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
reinit__is_reduced, _ = optional_import("ignite.metrics.metric", "0.4.11", min_version, "reinit__is_reduced")

__all__ = ["PaperPSNRMetric", "PaperPSNR", "RestorationReport", "slicing_axis"]

logger = logging.getLogger(__name__)


def slicing_axis(image: torch.Tensor) -> int:
    """The axis a channel-first 3D image ``(1, I, J, K)`` is sliced along, counted without the channel.

    The axial axis of the image's affine (MetaTensor), else the last axis; 0 for 2D images.
    """
    if image.ndim == 3:
        return 0
    from monai_tat.io import axial_axis  # the engine's rule, so metrics slice as restoration does

    affine = getattr(image, "affine", None)
    if affine is None:
        return 2
    affine = torch.as_tensor(affine)
    return axial_axis((affine[0] if affine.ndim == 3 else affine).cpu().numpy(), 3)


def _physical_image(x: torch.Tensor) -> np.ndarray:
    """``(1, *spatial)`` tensor -> numpy ``(*spatial)`` (2D images get a leading slice axis)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim not in (3, 4) or arr.shape[0] != 1:
        raise UserInputError(f"expected a one-channel (1, H, W) or (1, I, J, K) image, got shape {arr.shape}")
    return arr[0] if arr.ndim == 4 else arr


class PaperPSNRMetric(CumulativeIterationMetric):
    """PSNR in the TAT / AMIR papers' convention, one value per image (mean over its slices).

    Args:
        reduction: how :meth:`aggregate` reduces the buffered per-image values (default the mean,
            NaN images skipped).
        get_not_nans: also return the number of images that were not NaN.
        task_average: aggregate as the mean over tasks of each task's mean over its images, so
            that every task weighs the same whatever its number of validation images (an
            all-in-one model's checkpoint is then not chosen by its most numerous task alone).
            Applies to the mean reduction only; ``get_not_nans`` then counts the tasks with a value.

    Call: ``metric(y_pred, y, task=...)`` with batch-first ``(B, 1, *spatial)`` tensors in physical
    units and ``task`` one name for the whole batch or one per item.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False,
                 task_average: bool = False) -> None:
        super().__init__()
        self.reduction, self.get_not_nans, self.task_average = reduction, get_not_nans, task_average

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise UserInputError("the PSNR metric needs the label (the high-quality image)")
        task = kwargs.get("task")
        if task is None:
            raise UserInputError("the PSNR metric needs each image's task (ct, pet or mri) to choose its window")
        tasks = [task] * y_pred.shape[0] if isinstance(task, str) else list(task)
        if len(tasks) != y_pred.shape[0]:
            raise UserInputError(f"got {len(tasks)} task names for a batch of {y_pred.shape[0]} images")
        values = [self._image_psnr(y_pred[b], y[b], tasks[b]) for b in range(y_pred.shape[0])]
        # The task travels in the buffer (column 1, its index in TASKS) so that ranks' buffers
        # gathered in distributed evaluation keep each value's task.
        codes = [float(TASKS.index(check_task(t))) for t in tasks]
        return torch.tensor([values, codes], dtype=torch.float64).T

    @staticmethod
    def _image_psnr(pred: torch.Tensor, label: torch.Tensor, task: str) -> float:
        axis = slicing_axis(label)
        p, y = np.moveaxis(_physical_image(pred), axis, 0), np.moveaxis(_physical_image(label), axis, 0)
        values = np.array([psnr(p[i], y[i], task) for i in range(p.shape[0])], dtype=np.float64)
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else math.nan

    def aggregate(self, reduction: MetricReduction | str | None = None) -> Any:
        """Reduce the per-image values (default: their mean over non-NaN images)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise UserInputError("the PSNR metric has no values yet: run it on at least one image first")
        reduction = reduction or self.reduction
        if self.task_average and MetricReduction(reduction) == MetricReduction.MEAN:
            return self._task_mean(data)
        value, not_nans = do_metric_reduction(data[:, :1], reduction)
        return (value, not_nans) if self.get_not_nans else value

    def _task_mean(self, data: torch.Tensor) -> Any:
        """Mean over tasks of each task's mean over its non-NaN images; ``data`` ``(N, 2)``: value, task index."""
        per_task = []
        for code in torch.unique(data[:, 1]):
            values = data[data[:, 1] == code, 0]
            values = values[~torch.isnan(values)]
            if values.numel():
                per_task.append(values.mean())
        value = torch.stack(per_task).mean() if per_task else torch.tensor(math.nan, dtype=data.dtype)
        not_nans = torch.tensor(float(len(per_task)), dtype=data.dtype)
        return (value, not_nans) if self.get_not_nans else value


def _batch_tasks(batch: Any, task_key: str) -> list[str]:
    """The task of every item of a batch, collated (dict of lists) or decollated (list of dicts)."""
    if isinstance(batch, Mapping):
        tasks = batch[task_key]
        return [tasks] if isinstance(tasks, str) else [str(t) for t in tasks]
    return [str(item[task_key]) for item in batch]


def _items(x: Any) -> list[torch.Tensor]:
    return list(x) if isinstance(x, (list, tuple)) else [x[b] for b in range(x.shape[0])]


class PaperPSNR(IgniteMetricHandler):
    """Ignite handler of :class:`PaperPSNRMetric` (``key_val_metric`` of a ``SupervisedEvaluator``).

    Args:
        output_transform: extracts ``(y_pred, y)`` from ``engine.state.output``, physical units
            (default: the ``pred`` and ``label`` of every item).
        task_key: key of each item's task in ``engine.state.batch``.
        save_details: keep the per-image values in ``engine.state.metric_details`` (``(N, 2)``: PSNR in dB,
            the task's index in :data:`monai_tat.tasks.TASKS`).
        task_average: report the mean over tasks of the per-task means (see :class:`PaperPSNRMetric`)
            instead of the mean over all images.
    """

    def __init__(
        self,
        output_transform: Callable = from_engine(["pred", "label"]),
        task_key: str = "task",
        save_details: bool = True,
        task_average: bool = False,
    ) -> None:
        super().__init__(metric_fn=PaperPSNRMetric(task_average=task_average), output_transform=output_transform,
                         save_details=save_details)
        self.task_key = task_key

    def iteration_completed(self, engine: Any) -> None:
        y_pred, y = self._output_transform(engine.state.output)
        self.update((y_pred, y, _batch_tasks(engine.state.batch, self.task_key)))

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        """``output``: ``(y_pred, y, tasks)`` with one task name per item."""
        if len(output) != 3:
            raise ValueError(f"expected (y_pred, y, tasks), got {len(output)} values")
        y_pred, y, tasks = output
        for pred, label, task in zip(_items(y_pred), _items(y), tasks):
            self.metric_fn(pred[None], label[None], task=task)


def _gather_scores(scores: dict[str, SliceScores]) -> tuple[dict[str, SliceScores], int]:
    """Every process's per-task scores merged in rank order, and this process's rank (0 when not
    distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return scores, 0
    shards: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(shards, scores)
    tasks = list(dict.fromkeys(task for shard in shards for task in shard))  # first-seen order
    merged = {task: SliceScores.merged([shard[task] for shard in shards if task in shard]) for task in tasks}
    return merged, dist.get_rank()


class RestorationReport:
    """Per-slice PSNR / SSIM / RMSE of restored and input images against the label, per task.

    Attach to an evaluator whose postprocessing returns ``pred`` and ``image`` to physical units.
    At the end of the run it logs one line per task (means over slices as the papers' tables, the
    gain over the input and the paired t-test p-value over slices) and writes, in ``output_dir``,
    ``<name>_images.csv`` (one row per image) and ``<name>_summary.json`` (per task: means of both,
    and the paired comparison of every metric).

    Args:
        output_dir: folder of the report files (created).
        name: file name prefix.
        pred_key, input_key, label_key, task_key: keys in the evaluator's output / batch.
    """

    def __init__(self, output_dir: str | Path, name: str = "evaluation", pred_key: str = "pred",
                 input_key: str = "image", label_key: str = "label", task_key: str = "task") -> None:
        self.output_dir, self.name = Path(output_dir), name
        self.pred_key, self.input_key, self.label_key, self.task_key = pred_key, input_key, label_key, task_key
        self.scores: dict[str, SliceScores] = {}  # per task; the input is each image's baseline

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Any = None) -> None:
        self.scores = {}

    def iteration_completed(self, engine: Any) -> None:
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item, task in zip(outputs, _batch_tasks(engine.state.batch, self.task_key)):
            self.add(item[self.pred_key], item[self.input_key], item[self.label_key], task)

    def add(self, pred: torch.Tensor, image: torch.Tensor, label: torch.Tensor, task: str) -> dict[str, Any]:
        """Score one restored image and its input (channel-first, physical units); return its row."""
        axis = slicing_axis(label)
        reference = _physical_image(label)
        restored = slice_metrics(_physical_image(pred), reference, task, axis=axis)
        baseline = slice_metrics(_physical_image(image), reference, task, axis=axis)
        scores = self.scores.setdefault(task, SliceScores())
        meta = getattr(pred, "meta", {}) or {}
        name = str(meta.get("filename_or_obj", sum(len(s.rows) for s in self.scores.values())))
        return scores.add(name, restored, baseline, task=task)

    def summary(self) -> dict[str, Any]:
        """Per task: slice means of restored and input, and the paired comparison (restored - input)."""
        out: dict[str, Any] = {}
        for task, scores in self.scores.items():
            mean = scores.summary()
            out[task] = {
                "slices": mean["n"],
                "restored": {m: mean[m] for m in METRIC_NAMES},
                "input": {m: mean[f"baseline_{m}"] for m in METRIC_NAMES},
                "restored_vs_input": {m: c.as_dict() for m, c in scores.comparison().items()},
            }
        return out

    def completed(self, engine: Any = None) -> dict[str, Any]:
        """Log and write the report. Under ``torch.distributed`` (``multi_gpu_evaluate.json``) every
        process scored its shard of the data: the shards are gathered, every process returns the
        summary of all cases, and rank 0 alone logs and writes the files."""
        self.scores, rank = _gather_scores(self.scores)
        summary = self.summary()
        if rank != 0:
            return summary
        for task, s in summary.items():
            test = s["restored_vs_input"]["psnr"]
            logger.info(
                "%s (%d slices): PSNR %.2f dB (input %.2f, %+.2f dB, paired t-test p=%.3g) SSIM %.4f (input %.4f) "
                "RMSE %.4g (input %.4g)", task, s["slices"], s["restored"]["psnr"], s["input"]["psnr"],
                test["mean_difference"], test["p_value"], s["restored"]["ssim"], s["input"]["ssim"],
                s["restored"]["rmse"], s["input"]["rmse"],
            )
        self._write(summary)
        return summary

    def _write(self, summary: dict[str, Any]) -> None:
        from monai_tat.io import atomic_write

        self.output_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(summary, indent=2, default=float) + "\n"
        atomic_write(self.output_dir / f"{self.name}_summary.json",
                     lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)
        # one row per image: restored metrics, then the input's as the baseline
        fields = ["image", "task", "n", *METRIC_NAMES, *(f"baseline_{m}" for m in METRIC_NAMES)]
        rows = [row for scores in self.scores.values() for row in scores.rows]
        write_rows_csv(self.output_dir / f"{self.name}_images.csv", fields, rows, overwrite=True)
