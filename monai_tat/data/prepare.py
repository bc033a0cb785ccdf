"""The papers' slice selection before simulation: MRI central slices, PET without air-only slices."""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["select_slices", "crop_slices"]


def select_slices(
    volume: np.ndarray, task: str, axis: int, mri_slices: int = 100, pet_air_threshold: float = 0.1
) -> tuple[int, int]:
    """The ``[start, stop)`` range of slices along ``axis`` to keep for ``task``.

    - ``"mri"``: the central ``mri_slices`` slices (all of them when the volume has fewer).
    - ``"pet"``: from the first to the last slice that is not air-only. A slice is air-only when
      fewer than 1 % of its voxels exceed ``pet_air_threshold`` (SUV). Air-only slices inside that
      range are rare (they would leave a gap in the geometry) and are kept.
    - ``"ct"``: every slice.

    Returns ``(0, 0)`` when a PET volume holds only air.
    """
    n = volume.shape[axis]
    if task == "mri":
        keep = min(int(mri_slices), n)
        start = (n - keep) // 2
        return start, start + keep
    if task == "pet":
        moved = np.moveaxis(volume, axis, -1).reshape(-1, n)
        tissue = (moved > pet_air_threshold).mean(axis=0) >= 0.01
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
