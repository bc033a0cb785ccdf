"""Padding slices to a multiple of the trunk's total downsampling, and cropping back."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["pad_to_multiple", "crop_to"]


def pad_to_multiple(x: torch.Tensor, multiple: int = 8) -> torch.Tensor:
    """Pad ``(B, C, H, W)`` at the bottom/right so H and W are multiples of ``multiple``.

    Reflection padding (the usual choice for Restormer inference) keeps the border statistics of
    the image; a side shorter than the padding falls back to edge replication, which reflection
    cannot do. Returns ``x`` itself when no padding is needed.
    """
    height, width = x.shape[-2], x.shape[-1]
    pad_h = (multiple - height % multiple) % multiple
    pad_w = (multiple - width % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def crop_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop ``(B, C, H', W')`` back to the top-left ``(B, C, height, width)``."""
    return x[..., :height, :width]
