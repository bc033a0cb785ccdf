"""The papers' slice selection before simulation (MRI central slices, PET without air-only slices)."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from monai_tat.tasks import get_task

__all__ = ["select_slices", "crop_slices"]


def select_slices(
    volume: np.ndarray, task: str, axis: int, central_slices: int | None = None, air_threshold: float | None = None
) -> tuple[int, int]:
    """The ``[start, stop)`` range of slices along ``axis`` to keep for ``task`` (papers' selection).

    The task registry (:mod:`monai_tat.tasks`) says which rule applies; the arguments override its
    numbers:

    - ``central_slices`` (MRI: 100): the central slices (all of them when the volume has fewer).
    - ``air_threshold`` (PET: 0.1 SUV): from the first to the last slice that is not air-only. A
      slice is air-only when fewer than 1 % of its voxels exceed the threshold. Air-only slices
      inside that range are rare (they would leave a gap in the geometry) and are kept.
    - neither (CT): every slice.

    Returns ``(0, 0)`` when the volume holds only air.
    """
    spec = get_task(task)
    n = volume.shape[axis]
    if spec.central_slices is not None:
        keep = min(int(central_slices or spec.central_slices), n)
        start = (n - keep) // 2
        return start, start + keep
    if spec.air_threshold is not None:
        threshold = spec.air_threshold if air_threshold is None else air_threshold
        moved = np.moveaxis(volume, axis, -1).reshape(-1, n)
        tissue = (moved > threshold).mean(axis=0) >= 0.01
        idx = np.flatnonzero(tissue)
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0)
    return 0, n


def crop_slices(volume: MetaTensor, axis: int, start: int, stop: int) -> MetaTensor:
    """Slices ``[start, stop)`` along ``axis`` with the affine moved so every voxel keeps its position."""
    index = [slice(None)] * volume.ndim
    index[axis] = slice(start, stop)
    data = volume.as_tensor()[tuple(index)].clone()
    affine = volume.affine.clone().to(torch.float64)
    affine[:3, 3] += affine[:3, axis] * start
    meta = {k: v for k, v in volume.meta.items() if k != "affine"}
    return MetaTensor(data, affine=affine, meta=meta)
