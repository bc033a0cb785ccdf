"""Run a 2D slice operation over the MONAI array layouts the simulators accept.

Accepted layouts (MONAI channel-first):
- ``(H, W)``: one slice;
- ``(C, H, W)``: channel-first 2D image;
- ``(C, H, W, D)``: channel-first 3D volume, processed slice by slice along the last axis.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from monai.utils import convert_to_dst_type

from monai_tat.errors import UserInputError
from monai_tat.transforms._checks import ensure_finite

__all__ = ["apply_slicewise", "in_plane_spacing"]


def apply_slicewise(
    img: np.ndarray | torch.Tensor,
    fn: Callable[[np.ndarray], np.ndarray],
    who: str,
    complex_output: bool = False,
) -> np.ndarray | torch.Tensor:
    """Apply ``fn`` (float64 ``(H, W)`` -> ``(H, W)``) to every slice of ``img``.

    Returns the same container type as ``img`` (numpy, torch or MetaTensor with its metadata),
    float32 (float64 input stays float64; complex64/128 when ``complex_output``). ``img`` is not modified.
    """
    data = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if np.iscomplexobj(data):
        raise UserInputError(f"{who}: the input is complex; pass a real-valued (magnitude) image.")
    if data.ndim not in (2, 3, 4):
        raise UserInputError(
            f"{who}: expected an (H, W) slice, a channel-first (C, H, W) image or a (C, H, W, D) volume, "
            f"got shape {tuple(data.shape)}; add a channel axis with EnsureChannelFirst or numpy [None]."
        )
    ensure_finite(data, who)
    data = data.astype(np.float64, copy=False)
    out: np.ndarray | None = None
    for index in _slice_indices(data.shape):
        result = fn(data[index])
        if out is None:
            out = np.empty(data.shape, dtype=result.dtype)
        out[index] = result
    assert out is not None
    float_dtype = np.float64 if _dtype_name(img) == "float64" else np.float32
    if complex_output:
        dtype = np.complex128 if float_dtype == np.float64 else np.complex64
    else:
        dtype = float_dtype
    out = out.astype(dtype, copy=False)
    if isinstance(img, torch.Tensor):
        return convert_to_dst_type(out, img, dtype=dtype)[0]
    return out


def in_plane_spacing(img: np.ndarray | torch.Tensor, default: float) -> float:
    """The first in-plane pixel spacing in mm from a MetaTensor's affine, else ``default``."""
    affine = getattr(img, "affine", None)
    if affine is None or not hasattr(img, "meta") or "affine" not in getattr(img, "meta", {}):
        return default
    spatial = img.ndim - 1 if img.ndim in (3, 4) else img.ndim
    a = np.asarray(affine, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 3 or spatial < 2:
        return default
    spacing = float(np.linalg.norm(a[:-1, 0]))
    return spacing if np.isfinite(spacing) and spacing > 0 else default


def _slice_indices(shape: tuple[int, ...]):
    if len(shape) == 2:
        yield (slice(None), slice(None))
    elif len(shape) == 3:
        for c in range(shape[0]):
            yield (c, slice(None), slice(None))
    else:
        for c in range(shape[0]):
            for k in range(shape[3]):
                yield (c, slice(None), slice(None), k)


def _dtype_name(img: np.ndarray | torch.Tensor) -> str:
    dtype = img.dtype
    return "float64" if dtype in (np.float64, torch.float64) else str(dtype)
