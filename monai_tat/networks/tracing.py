"""Guards that keep traced (TorchScript / ONNX) exports honest about the slice size they were traced at.

Tracing freezes Python control flow that depends on the input size: the padding to a multiple of
8 and TAT's local attention windows. A traced network is therefore only valid at the size it was
traced with; this module records that size and makes the traced graph refuse any other.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["check_traced_size"]


@torch.jit.script_if_tracing
def _require_spatial_size(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if image.shape[-2] != height or image.shape[-1] != width:
        raise RuntimeError(
            "this traced network is valid only for slices of size "
            + str(height) + "x" + str(width) + " (its local windows and padding were frozen at that size); "
            + "got " + str(image.shape[-2]) + "x" + str(image.shape[-1]) + ". Trace it again at that size or use the eager network."
        )  # fmt: skip
    return image


def check_traced_size(module: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """Return ``image``; while tracing, also record its H x W on ``module.traced_size`` and insert a
    size check into the traced graph so the exported network refuses other sizes."""
    if not torch.jit.is_tracing():
        return image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        height, width = int(image.shape[-2]), int(image.shape[-1])
    module.traced_size = (height, width)
    return _require_spatial_size(image, height, width)
