"""Image-quality metrics in the TAT / AMIR papers' convention and paired significance tests.

Example::

    from monai_tat.metrics import psnr, ssim, rmse, paired_comparison
    psnr(pred_hu, full_dose_hu, task="ct")   # clipped to [-160, 240] HU, R from the label
"""

from __future__ import annotations

from monai_tat.metrics.image_quality import (
    EVAL_WINDOWS,
    METRIC_NAMES,
    clip_to_window,
    image_metrics,
    psnr,
    rmse,
    slice_metrics,
    ssim,
    summarize,
)
from monai_tat.metrics.evaluator import SliceScores, score_files, score_volumes, write_rows_csv
from monai_tat.metrics.monai_metrics import PaperPSNR, PaperPSNRMetric, RestorationReport
from monai_tat.metrics.statistics import PairedComparison, paired_comparison

__all__ = [
    "EVAL_WINDOWS",
    "METRIC_NAMES",
    "PairedComparison",
    "PaperPSNR",
    "PaperPSNRMetric",
    "RestorationReport",
    "SliceScores",
    "clip_to_window",
    "image_metrics",
    "paired_comparison",
    "psnr",
    "rmse",
    "score_files",
    "score_volumes",
    "slice_metrics",
    "ssim",
    "summarize",
    "write_rows_csv",
]
