"""Exponential moving average of network weights (TAT: beta 0.999), for validation and the saved model."""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["create_ema", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain network inside DistributedDataParallel / DataParallel / AveragedModel wrappers."""
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel, AveragedModel)):
        model = model.module
    return model


def create_ema(network: nn.Module, decay: float = 0.999) -> AveragedModel:
    """An EMA copy of ``network`` (unwrapped from DDP): ``ema = decay * ema + (1 - decay) * weights``.

    Call ``ema.update_parameters(network)`` after every optimiser step; the first call copies the
    weights. Buffers are averaged too (``use_buffers=True``) so the copy is self-contained.
    ``unwrap_model(ema)`` is the averaged network to validate and save.
    """
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"EMA decay must lie in [0, 1), got {decay}.")
    return AveragedModel(unwrap_model(network), multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
