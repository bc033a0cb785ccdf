"""Small CT and PET volumes in their task's units and in the units they often arrive in.

Shared by the units tests of the API, the command line and the Slicer logic (``tests/`` is on
``sys.path`` through its ``conftest.py``).
"""

from __future__ import annotations

import numpy as np

#: Bq/mL -> SUV factor of the PET phantom (70 kg, 370 MBq, decay-corrected to the injection).
PET_SUV_FACTOR = 70_000.0 / 370.0e6
#: Stored value -> HU of the CT phantom (the usual intercept of unsigned CT series).
CT_RESCALE_INTERCEPT = -1024.0


def _disc(shape: tuple[int, int, int], radius: float) -> np.ndarray:
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    return np.repeat(((yy**2 + xx**2) < radius**2)[:, :, None], shape[2], axis=2)


def ct_hu(shape: tuple[int, int, int] = (24, 24, 3), seed: int = 0) -> np.ndarray:
    """A body disc in HU: air -1000 around, a fat ring near -100, soft tissue near 40, a bone core 700."""
    rng = np.random.default_rng(seed)
    volume = np.full(shape, -1000.0)
    volume[_disc(shape, 0.85)] = -100.0
    volume[_disc(shape, 0.7)] = 40.0
    volume[_disc(shape, 0.2)] = 700.0
    return (volume + rng.normal(0.0, 20.0, shape)).astype(np.float32)


def ct_stored(shape: tuple[int, int, int] = (24, 24, 3), seed: int = 0) -> np.ndarray:
    """:func:`ct_hu` as unsigned stored values (air near 0, water near 1024)."""
    return (ct_hu(shape, seed) - np.float32(CT_RESCALE_INTERCEPT)).astype(np.float32)


def pet_suv(shape: tuple[int, int, int] = (24, 24, 3), seed: int = 0) -> np.ndarray:
    """A body disc in SUV: 0 around, background 1.5, a hot lesion 8 (noisy, never negative)."""
    rng = np.random.default_rng(seed)
    volume = np.zeros(shape)
    volume[_disc(shape, 0.8)] = 1.5
    volume[_disc(shape, 0.25)] = 8.0
    return np.clip(volume + rng.normal(0.0, 0.1, shape) * (volume > 0), 0.0, None).astype(np.float32)


def pet_bqml(shape: tuple[int, int, int] = (24, 24, 3), seed: int = 0) -> np.ndarray:
    """:func:`pet_suv` as activity concentration in Bq/mL."""
    return (pet_suv(shape, seed) / PET_SUV_FACTOR).astype(np.float32)

