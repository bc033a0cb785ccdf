"""The network: prepared once per restoration, and the one call into it.

:func:`prepare_network` turns what the caller gave (a module or a model spec) into the module the
slice loop runs; :func:`forward` is the only place that calls it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.cpu_speed import eager_network, prepare_cpu_network
from monai_tat.inference.devices import autocast
from monai_tat.inference.engine.threads import network_threads
from monai_tat.inference.models import load_model
from monai_tat.inference.self_ensemble import SelfEnsemble

__all__ = ["prepare_network", "network_for_slices", "network_name", "forward"]


def prepare_network(network: nn.Module | str | Path, device: torch.device) -> nn.Module:
    """The module to run: ``network`` itself, or loaded from its spec onto ``device``."""
    if isinstance(network, (str, Path)):
        network = load_model(network, device)
    if not isinstance(network, nn.Module):
        raise UserInputError(f"network must be a torch.nn.Module or a model spec, got {type(network).__name__}")
    return network


def network_for_slices(network: nn.Module, device: torch.device, slices: int, height: int, width: int,
                       self_ensemble: bool) -> nn.Module:
    """The module the slice loop runs for ``slices`` slices of ``height`` x ``width``: on the CPU the
    compiled network when the mode asks for it (:mod:`monai_tat.inference.cpu_speed`), wrapped in
    :class:`~monai_tat.inference.self_ensemble.SelfEnsemble` when asked (8 passes per slice)."""
    with network_threads():  # compiled for the thread count the network runs with
        network = prepare_cpu_network(network, device, height, width, slices * (8 if self_ensemble else 1))
    return SelfEnsemble(network) if self_ensemble else network


def network_name(network: nn.Module) -> str:
    """The class name of the restoration network (inside a self-ensemble or compiled wrapper)."""
    return type(eager_network(network.network if isinstance(network, SelfEnsemble) else network)).__name__


def forward(network: nn.Module, batch: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """One batch ``(B, H, W)`` through the network in inference mode; returns ``(B, H, W)`` float32
    on ``device`` (the host copy is the caller's, non-blocking on CUDA)."""
    x = batch[:, None].to(device, non_blocking=True)
    with torch.inference_mode(), autocast(device, amp_dtype), network_threads():
        y = network(x)
    if isinstance(y, (tuple, list)):  # e.g. AMIR's (image, balance loss) if a subclass forgets eval mode
        y = y[0]
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserInputError(
            f"the network returned {shape} for input {tuple(x.shape)}; a restoration network must map (B, 1, H, W) "
            "to the same shape"
        )
    return y[:, 0].float()
