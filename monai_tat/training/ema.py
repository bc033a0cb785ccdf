"""Exponential moving average of the network's weights (TAT: decay 0.999), as an ignite handler.

The averaged copy is what validation scores and what the bundles save; the online network keeps
training. A warm-up lets the average follow the network closely at first (momentum 1 falling
linearly to ``1 - decay``), so that the random initial weights do not linger in it on short runs.
"""

from __future__ import annotations

from typing import Any

from ignite.handlers import EMAHandler
from torch import nn

__all__ = ["WeightEMA"]


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
