"""Does a confidence map point at the errors? Rank correlation of per-patch confidence and per-patch error.

A confidence map (:func:`monai_tat.inference.confidence.restore_with_confidence`) is useful when it
is high where the restoration is wrong. Both maps are cut into square in-plane patches on every
slice; each patch gets its mean confidence and its root-mean-square error against the reference;
the Spearman rank correlation of the two lists says how well the map ranks the patches by error
(1: perfectly, 0: not at all).

Example::

    rho = patch_rank_correlation(confidence, restored - reference, patch=16, axis=2)
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from monai_tat.errors import UserInputError

__all__ = ["patch_means", "patch_rank_correlation"]


def patch_means(values: np.ndarray | torch.Tensor, patch: int, axis: int | None) -> np.ndarray:
    """Mean of ``values`` over every whole ``patch x patch`` in-plane patch of every slice, flattened.

    Args:
        values: ``(I, J)`` or ``(I, J, K)``.
        patch: patch side in pixels; rows / columns left over at the far edges are not used.
        axis: slicing axis of a 3D volume (None for 2D).
    """
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    slices = array[None] if array.ndim == 2 or axis is None else np.moveaxis(array, axis, 0)
    n, h, w = slices.shape
    if patch < 1 or patch > min(h, w):
        raise UserInputError(f"patch side {patch} does not fit slices of {h} x {w} pixels")
    rows, cols = h // patch, w // patch
    cropped = slices[:, :rows * patch, :cols * patch].astype(np.float64)
    return cropped.reshape(n, rows, patch, cols, patch).mean(axis=(2, 4)).ravel()


def patch_rank_correlation(confidence: np.ndarray | torch.Tensor, error: np.ndarray | torch.Tensor,
                           patch: int = 16, axis: int | None = None) -> float:
    """Spearman correlation between per-patch mean confidence and per-patch RMS error.

    Args:
        confidence: the confidence map (any units; only ranks count).
        error: ``restored - reference`` (or any signed error) on the same grid.
        patch, axis: as :func:`patch_means`.

    Returns:
        rho in [-1, 1]; NaN when either list is constant (nothing to rank).

    Raises:
        UserInputError: the two maps differ in shape, or hold NaN / infinite values.
    """
    if tuple(confidence.shape) != tuple(error.shape):
        raise UserInputError(f"confidence {tuple(confidence.shape)} and error {tuple(error.shape)} differ in shape")
    mean_confidence = patch_means(confidence, patch, axis)
    squared = error.float().square() if isinstance(error, torch.Tensor) else np.square(np.asarray(error, np.float64))
    patch_rmse = np.sqrt(patch_means(squared, patch, axis))
    if not (np.isfinite(mean_confidence).all() and np.isfinite(patch_rmse).all()):
        raise UserInputError("the confidence or the error map holds NaN or infinite values")
    if np.ptp(mean_confidence) == 0.0 or np.ptp(patch_rmse) == 0.0:
        return float("nan")
    return float(spearmanr(mean_confidence, patch_rmse).statistic)
