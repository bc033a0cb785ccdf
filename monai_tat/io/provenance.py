"""What identifies a restoration: the network's weights, hashed independently of the file format.

The same weights saved as ``.pt``, ``.safetensors`` or inside a bundle give the same hash, so a
DICOM series' DerivationDescription or a batch manifest names the weights, not the container.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

__all__ = ["weights_sha256"]


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 (64 hex digits) of the model's state dict: each key, dtype, shape and tensor bytes, in key order.

    A model wrapped for inference (e.g. a self-ensemble wrapper with a ``network`` attribute) is
    hashed as the network it wraps.
    """
    inner = getattr(model, "network", None)
    if isinstance(inner, nn.Module):
        model = inner
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        if value.numel():  # raw bytes (a uint8 view also covers bfloat16, which numpy lacks)
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
