"""Averages of a network's weights: the exponential moving average during training (TAT: decay
0.999, an ignite handler) and the plain mean of finished weights of one lineage.

The EMA copy is what validation scores and what the bundles save; the online network keeps
training. A warm-up lets the average follow the network closely at first (momentum 1 falling
linearly to ``1 - decay``), so that the random initial weights do not linger in it on short runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import torch
from ignite.handlers import EMAHandler
from torch import nn

from monai_tat.errors import UserInputError

__all__ = ["WeightEMA", "average_weights", "mixing_fractions"]


def mixing_fractions(count: int, fractions: Optional[Sequence[float]] = None) -> list[float]:
    """The fractions of a weighted mean of ``count`` weights: ``fractions`` checked, or equal shares.

    Raises:
        UserInputError: fractions that are not one positive number per weights file summing to 1.
    """
    if fractions is None:
        return [1.0 / count] * count
    if len(fractions) != count or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise UserInputError(f"fractions must be one positive number per weights file ({count}) summing to 1; "
                             f"got {list(fractions)}")
    return [float(f) for f in fractions]


def average_weights(states: Sequence[Mapping[str, torch.Tensor]],
                    fractions: Optional[Sequence[float]] = None) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts of one architecture (e.g. a network and its fine-tuned self),
    or their weighted mean with ``fractions`` (one per state, positive, summing to 1).

    Floating-point tensors are averaged in float32 and returned float32; any other tensor (counters,
    integer buffers) must be equal in every state and is kept. Averaging only makes sense for
    weights that lie in one basin (one training lineage); it is not checked.

    Raises:
        UserInputError: fewer than two states, states whose keys, shapes or non-float values differ, or
            fractions that are not one positive number per state summing to 1.
    """
    if len(states) < 2:
        raise UserInputError(f"averaging weights needs at least two state dicts, got {len(states)}")
    fractions = mixing_fractions(len(states), fractions)
    first = states[0]
    for index, state in enumerate(states[1:], start=2):
        if set(state) != set(first):
            differ = sorted(set(state) ^ set(first))
            raise UserInputError(f"weights 1 and {index} are not of the same network: keys differ ({differ[:5]})")
        for key, value in state.items():
            if tuple(value.shape) != tuple(first[key].shape):
                raise UserInputError(f"weights 1 and {index} differ in the shape of {key!r}: "
                                     f"{tuple(first[key].shape)} vs {tuple(value.shape)}")
    averaged: dict[str, torch.Tensor] = {}
    for key, value in first.items():
        if value.is_floating_point():
            averaged[key] = sum(f * s[key].detach().float().cpu() for f, s in zip(fractions, states))
        else:
            if any(not torch.equal(s[key].cpu(), value.cpu()) for s in states[1:]):
                raise UserInputError(f"the non-float tensor {key!r} differs between the weights: it cannot be averaged")
            averaged[key] = value.detach().cpu().clone()
    return averaged


class WeightEMA(EMAHandler):
    """``ema = decay * ema + (1 - decay) * weights`` after every iteration; ``ema_model`` is the plain network.

    Args:
        network: the trained network (a DistributedDataParallel wrapper is looked through).
        decay: the papers' beta (TAT: 0.999), in [0, 1).
        warmup_iterations: iterations over which the update weight falls from 1 to ``1 - decay``
            (0: none, the papers' setting).

    Attach it as a train handler; save or validate ``ema.ema_model``. The average lives on the
    network's device. Its state (averaged weights, warm-up position) saves with a training
    checkpoint, so a resumed run continues the same average.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, warmup_iterations: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}.")
        warmup = int(warmup_iterations) if warmup_iterations and warmup_iterations > 1 else None
        # ignite's momentum is the weight of the new value; decay 0 (no averaging) is a momentum just below 1.
        momentum = min(1.0 - decay, 1.0 - 1e-12)
        super().__init__(network, momentum=momentum, momentum_warmup=1.0 if warmup else None, warmup_iters=warmup)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and how far the warm-up has gone."""
        scheduler = getattr(self, "momentum_scheduler", None)
        return {"model": self.ema_model.state_dict(), "warmup_step": int(getattr(scheduler, "event_index", 0))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (call after attaching, as a checkpoint loader does at the start of a run)."""
        self.ema_model.load_state_dict(state["model"])
        scheduler = getattr(self, "momentum_scheduler", None)
        if scheduler is not None:
            scheduler.event_index = int(state.get("warmup_step", 0))
