"""PSNR, SSIM and RMSE exactly as the TAT and AMIR papers evaluate them.

Convention (both papers' evaluation code): images are compared in physical units (HU, SUV, MRI
intensity), prediction and label are both clipped to the task's evaluation window, and the data
range of each 2D image is ``label.max() - label.min()`` after clipping.

- PSNR = 10 log10(R^2 / MSE) in dB.
- SSIM: 11x11 Gaussian window (sigma 1.5) with zero padding of 5, so the SSIM map has the image's
  size; C1 = (0.01 R)^2, C2 = (0.03 R)^2; the mean of the map. Computed with MONAI's
  ``compute_ssim_and_cs`` on zero-padded images (MONAI itself convolves without padding).
- RMSE = sqrt(MSE) in physical units.

A constant label has R = 0: PSNR and SSIM are undefined and returned as NaN (means skip them and
report how many). A NaN or infinite voxel in the prediction or the label is an error naming the
image and the slice: it is never scored (NaN would otherwise compare as a perfect match).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics.regression import compute_ssim_and_cs

from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS, get_task

__all__ = [
    "EVAL_WINDOWS",
    "METRIC_NAMES",
    "clip_to_window",
    "psnr",
    "mean_slice_psnr",
    "ssim",
    "rmse",
    "image_metrics",
    "slice_metrics",
    "summarize",
    "check_finite",
]

#: Evaluation windows of the papers in physical units, from the task registry: CT abdomen window
#: W400/L40 (HU), PET SUV, MRI intensity (12-bit).
EVAL_WINDOWS: Mapping[str, tuple[float, float]] = MappingProxyType({t: get_task(t).eval_window for t in TASKS})
METRIC_NAMES = ("psnr", "ssim", "rmse")


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _window(task: str | None) -> tuple[float, float] | None:
    if task is None:
        return None
    return get_task(task).eval_window


def clip_to_window(x: Any, task: str | None) -> np.ndarray:
    """Clip an image (physical units) to the task's evaluation window; no clipping for task None."""
    arr = _as_numpy(x)
    window = _window(task)
    return arr if window is None else np.clip(arr, *window)


def check_finite(image: np.ndarray, name: str, where: str = "") -> None:
    """Raise when an image holds NaN or infinite values: no metric of it can be stood behind."""
    bad = ~np.isfinite(image)
    if bad.any():
        n_nan = int(np.isnan(image).sum())
        raise UserInputError(
            f"{name} has {n_nan} NaN and {int(bad.sum()) - n_nan} infinite value(s){where}; metrics of such an "
            "image are undefined: fix or replace those voxels (or crop those slices away) before scoring"
        )


def _prepare(pred: Any, label: Any, task: str | None) -> tuple[np.ndarray, np.ndarray]:
    check_finite(_as_numpy(pred), "the prediction")
    check_finite(_as_numpy(label), "the reference")
    p, y = clip_to_window(pred, task), clip_to_window(label, task)
    if p.shape != y.shape:
        raise UserInputError(f"prediction shape {p.shape} differs from label shape {y.shape}")
    if p.size == 0:
        raise UserInputError("cannot compute metrics of an empty image")
    return p, y


def _data_range(label: np.ndarray, data_range: float | None) -> float:
    return float(label.max() - label.min()) if data_range is None else float(data_range)


def psnr(pred: Any, label: Any, task: str | None = None, data_range: float | None = None) -> float:
    """PSNR in dB of one image (any shape) after clipping to the task window.

    Args:
        pred, label: arrays of the same shape in physical units.
        task: "ct", "pet", "mri" (clip to its window) or None (no clipping).
        data_range: R; default ``label.max() - label.min()`` after clipping.

    Returns:
        10 log10(R^2 / MSE); ``inf`` when the images are equal, NaN when R is 0.
    """
    p, y = _prepare(pred, label, task)
    r = _data_range(y, data_range)
    if r <= 0:
        return math.nan
    mse = float(np.mean((p - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(r * r / mse)


def mean_slice_psnr(pred: Any, label: Any, task: str | None = None) -> float:
    """Mean :func:`psnr` over the slices along the last axis of ``(H, W, K)`` images (``(H, W)``: one slice)."""
    p, y = _as_numpy(pred), _as_numpy(label)
    if y.ndim == 2:
        return psnr(p, y, task)
    return float(np.mean([psnr(p[..., k], y[..., k], task) for k in range(y.shape[-1])]))


def rmse(pred: Any, label: Any, task: str | None = None) -> float:
    """Root mean squared error in physical units after clipping to the task window."""
    p, y = _prepare(pred, label, task)
    return float(np.sqrt(np.mean((p - y) ** 2)))


def ssim(
    pred: Any,
    label: Any,
    task: str | None = None,
    data_range: float | None = None,
    kernel_size: int = 11,
    kernel_sigma: float = 1.5,
) -> float:
    """Mean SSIM of one 2D image (H, W) with a zero-padded Gaussian window (same-size SSIM map).

    Args:
        pred, label: (H, W) arrays in physical units.
        task: clipping window as in :func:`psnr`.
        data_range: R; default ``label.max() - label.min()`` after clipping. NaN when R is 0.
        kernel_size, kernel_sigma: Gaussian window (papers: 11, 1.5); padding is kernel_size // 2.
    """
    p, y = _prepare(pred, label, task)
    if p.ndim != 2:
        raise UserInputError(f"SSIM takes a 2D image, got shape {p.shape}; use slice_metrics for volumes")
    r = _data_range(y, data_range)
    if r <= 0:
        return math.nan
    pad = kernel_size // 2
    # Zero padding before a valid convolution equals a convolution with zero padding.
    pt = F.pad(torch.from_numpy(p)[None, None], (pad, pad, pad, pad))
    yt = F.pad(torch.from_numpy(y)[None, None], (pad, pad, pad, pad))
    ssim_map, _ = compute_ssim_and_cs(
        pt, yt, spatial_dims=2, kernel_size=(kernel_size, kernel_size),
        kernel_sigma=(kernel_sigma, kernel_sigma), data_range=r,
    )
    return float(ssim_map.double().mean())


def image_metrics(pred: Any, label: Any, task: str | None) -> dict[str, float]:
    """``{"psnr", "ssim", "rmse"}`` of one 2D image in the papers' convention."""
    return {"psnr": psnr(pred, label, task), "ssim": ssim(pred, label, task), "rmse": rmse(pred, label, task)}


def slice_metrics(
    pred: Any, label: Any, task: str | None, axis: int = -1, names: tuple[str, str] = ("the prediction", "the reference")
) -> dict[str, np.ndarray]:
    """Metrics of every 2D slice of a volume (or of one 2D image), each slice with its own data range.

    Args:
        pred, label: (H, W) or 3D arrays of equal shape in physical units.
        task: "ct" / "pet" / "mri" or None.
        axis: slicing axis of a 3D volume (ignored for 2D).
        names: how errors name the prediction and the label (e.g. their file names).

    Returns:
        ``{"psnr": (N,), "ssim": (N,), "rmse": (N,)}`` with N slices (1 for a 2D image).

    Raises:
        UserInputError: shapes differ, or a NaN / infinite value (named by image and slice).
    """
    p, y = _as_numpy(pred), _as_numpy(label)
    if p.shape != y.shape:
        raise UserInputError(f"prediction shape {p.shape} differs from label shape {y.shape}")
    if p.ndim == 2:
        p, y, axis = p[None], y[None], 0
    elif p.ndim != 3:
        raise UserInputError(f"metrics take 2D images or 3D volumes, got shape {p.shape}")
    slicing_axis = axis % 3
    p, y = np.moveaxis(p, axis, 0), np.moveaxis(y, axis, 0)
    for volume, name in zip((p, y), names):
        finite = np.isfinite(volume).reshape(volume.shape[0], -1).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            where = (f" in slice {bad[0]}" + (f" (and {bad.size - 1} more)" if bad.size > 1 else "")
                     + (f" along axis {slicing_axis}" if volume.shape[0] > 1 else ""))
            check_finite(volume[bad], name, where)
    rows = [image_metrics(p[i], y[i], task) for i in range(p.shape[0])]
    return {name: np.array([row[name] for row in rows], dtype=np.float64) for name in METRIC_NAMES}


def summarize(values: dict[str, Sequence[float]]) -> dict[str, float]:
    """Means over slices as the papers' tables, skipping NaN (slices with a constant label).

    Returns ``{"psnr", "ssim", "rmse", "n", "n_skipped"}``.
    """
    out: dict[str, float] = {}
    psnr_values = np.asarray(values["psnr"], dtype=np.float64)
    valid = ~np.isnan(psnr_values)
    for name in METRIC_NAMES:
        v = np.asarray(values[name], dtype=np.float64)[valid]
        out[name] = float(v.mean()) if v.size else math.nan
    out["n"] = int(valid.sum())
    out["n_skipped"] = int((~valid).sum())
    return out
