"""Parallel-beam projection helpers on scikit-image's radon/iradon for the CT and PET simulators."""

from __future__ import annotations

import numpy as np

__all__ = ["angles", "inscribed_circle", "pad_to_square", "crop_from_square"]


def angles(num_views: int) -> np.ndarray:
    """``num_views`` equally spaced projection angles over [0, 180) degrees (parallel beam)."""
    return np.linspace(0.0, 180.0, int(num_views), endpoint=False)


def inscribed_circle(size: int) -> np.ndarray:
    """Boolean ``(size, size)`` mask of the circle scikit-image's ``circle=True`` projectors see."""
    centre = size // 2
    yy, xx = np.ogrid[:size, :size]
    return (yy - centre) ** 2 + (xx - centre) ** 2 <= (size // 2) ** 2


def pad_to_square(slice2d: np.ndarray, size: int, value: float = 0.0) -> np.ndarray:
    """Centre ``slice2d`` in a ``(size, size)`` array filled with ``value``."""
    h, w = slice2d.shape
    top, left = (size - h) // 2, (size - w) // 2
    out = np.full((size, size), value, dtype=slice2d.dtype)
    out[top : top + h, left : left + w] = slice2d
    return out


def crop_from_square(square: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Undo :func:`pad_to_square` for an original slice ``shape``."""
    size = square.shape[0]
    h, w = shape
    top, left = (size - h) // 2, (size - w) // 2
    return square[top : top + h, left : left + w]
