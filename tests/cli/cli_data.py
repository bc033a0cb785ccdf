"""Synthetic CT-like volumes on disk for command-line tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

from monai_tat.io import write_volume


def write_ct(path: Path, shape=(16, 16, 3), seed: int = 0, noise: float = 30.0) -> Path:
    """A CT-like phantom in HU (air around a soft-tissue disc) with an oblique-free, offset affine."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    disc = (yy**2 + xx**2 < 0.6).astype(np.float32)
    volume = np.stack([-1000.0 + 1040.0 * disc] * shape[2], axis=-1)
    volume = volume + rng.normal(0, noise, volume.shape)
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-5.0, 7.0, 30.0]
    image = MetaTensor(torch.from_numpy(volume.astype(np.float32)), affine=torch.as_tensor(affine))
    return write_volume(image, path, overwrite=True)
