"""Synthetic volumes for the benchmarks: a CT-like volume in HU and PET- / MRI-like volumes made from it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["ct_like_volume", "synthetic_volume"]


def ct_like_volume(shape: Sequence[int], seed: int = 0) -> MetaTensor:
    """An ellipse of soft tissue with a bone ring in air, plus quarter-dose-like noise, in HU.

    Shape ``(I, J, K)``; spacing 0.7 x 0.7 x 2.5 mm; K is the axial axis. Air is at -1000 HU and
    the noise reaches below -1024 HU, so the volume has voxels outside the CT model range.
    """
    rng = np.random.default_rng(seed)
    i, j, k = shape
    xx, yy = np.meshgrid(np.linspace(-1, 1, i), np.linspace(-1, 1, j), indexing="ij")  # (I, J)
    r = (xx / 0.85) ** 2 + (yy / 0.65) ** 2
    plane = np.where(r < 1.0, 40.0, -1000.0) + np.where((r > 0.8) & (r < 0.9), 700.0, 0.0)
    volume = np.empty((i, j, k), dtype=np.float32)
    for z in range(k):  # slice by slice: no float64 copy of the whole volume
        volume[:, :, z] = plane + rng.normal(0.0, 25.0, (i, j))
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(volume), affine=affine, meta={"modality": "CT"})


def synthetic_volume(task: str, shape: Sequence[int], seed: int = 0) -> MetaTensor:
    """A volume for ``task`` in its units: the CT-like volume in HU, or derived from it as PET-like
    SUV (air 0, tissue about 10, bone ring above 20 SUV) or MRI-like signal (percentile scaling)."""
    volume = ct_like_volume(shape, seed)
    if task == "ct":
        return volume
    data = volume.as_tensor()
    if task == "pet":
        data.add_(1000.0).div_(100.0).clamp_(min=0.0)
        modality = "PT"
    elif task == "mri":
        data.add_(1000.0).clamp_(min=0.0).round_()
        modality = "MR"
    else:
        raise ValueError(f"unknown task {task!r}")
    volume.meta["modality"] = modality
    return volume
