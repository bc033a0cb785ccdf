"""Image geometry: ITK's LPS (origin, spacing, direction) <-> MONAI's 4x4 RAS affine, and the axial axis.

Array convention (as MONAI's ITK reader): a 3D image is indexed ``[i, j, k]`` (x fastest in the
file), and ``affine @ [i, j, k, 1]`` is the voxel centre in RAS millimetres. 2D images use the same
4x4 affine with the third column along +S and unit length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["LPS_TO_RAS", "affine_from_itk", "itk_from_affine", "axial_axis", "spacing_from_affine"]

# LPS and RAS differ by the sign of the first two world axes; the matrix is its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_from_itk(origin: Sequence[float], spacing: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """Return the 4x4 RAS affine of an ITK image (2D or 3D).

    Args:
        origin: LPS position of voxel 0 in mm, length D (2 or 3).
        spacing: voxel size in mm per array axis, length D.
        direction: D x D direction cosines, row-major as ITK returns them (columns are array axes).
    """
    dim = len(origin)
    d = np.asarray(direction, dtype=np.float64).reshape(dim, dim)
    lps = np.eye(4)
    lps[:dim, :dim] = d * np.asarray(spacing, dtype=np.float64)[None, :]
    lps[:dim, 3] = np.asarray(origin, dtype=np.float64)
    return LPS_TO_RAS @ lps


def spacing_from_affine(affine: np.ndarray, ndim: int) -> np.ndarray:
    """Voxel size in mm of the first ``ndim`` array axes (lengths of the affine's columns)."""
    a = np.asarray(affine, dtype=np.float64)
    return np.linalg.norm(a[:3, :ndim], axis=0)


def itk_from_affine(affine: np.ndarray, ndim: int) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Inverse of :func:`affine_from_itk`: ``(origin, spacing, direction)`` in LPS for an ``ndim``-D image.

    For a 2D image only the in-plane 2x2 block of the direction is kept (ITK 2D images have no
    out-of-plane geometry).
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = spacing_from_affine(affine, ndim)
    spacing = np.where(spacing > 0, spacing, 1.0)  # a degenerate column would make ITK refuse the image
    direction = lps[:ndim, :ndim] / spacing[None, :]
    if ndim == 2:
        # Keep the 2x2 block orthonormal-ish; fall back to identity when it is degenerate.
        if abs(np.linalg.det(direction)) < 1e-6:
            direction = np.eye(2)
    origin = lps[:ndim, 3]
    return tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.reshape(-1).tolist())


def axial_axis(affine: np.ndarray | None, ndim: int = 3) -> int:
    """Array axis of a 3D image that runs closest to the patient's inferior-superior direction.

    This is the acquisition axis of axial CT / PET / MRI and the default slicing axis. Without an
    affine the last axis is used (MONAI / NIfTI convention).
    """
    if ndim != 3:
        raise ValueError(f"axial_axis needs a 3D image, got {ndim} dimensions")
    if affine is None:
        return 2
    columns = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(columns, axis=0)
    norms = np.where(norms > 0, norms, 1.0)
    return int(np.argmax(np.abs(columns[2, :]) / norms))
