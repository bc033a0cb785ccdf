"""Shared input checks for the transforms: finite values and supported array layouts."""

from __future__ import annotations

import numpy as np
import torch

from monai_tat.errors import UserInputError

__all__ = ["ensure_finite", "float_dtype_for"]


def ensure_finite(data: torch.Tensor | np.ndarray, who: str, what: str = "input") -> None:
    """Raise :class:`UserInputError` when ``data`` holds NaN or +/-Inf values.

    Args:
        data: any tensor or array.
        who: the transform name, used in the message.
        what: which data (``"input"``, ``"restored image"``), used in the message.
    """
    t = torch.as_tensor(data)
    if not (t.is_floating_point() or t.is_complex()):
        return  # integer arrays cannot hold NaN or Inf
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    n_nan = int(torch.isnan(t).sum())
    n_inf = int((~finite).sum()) - n_nan
    raise UserInputError(
        f"{who}: the {what} contains {n_nan} NaN and {n_inf} infinite value(s); replace them "
        "(for example with numpy.nan_to_num or by masking the invalid region) before applying it."
    )


def float_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The floating dtype a transform computes in: float64 stays float64, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
