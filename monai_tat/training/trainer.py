"""Iteration-based training loop for the bundles (papers train by iterations, not epochs)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_tat.training.checkpoint import save_state_dict
from monai_tat.training.ema import unwrap_model

__all__ = ["IterationTrainer"]

logger = logging.getLogger(__name__)


def _distributed() -> tuple[bool, int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return True, dist.get_rank(), dist.get_world_size()
    return False, 0, 1


class IterationTrainer:
    """Train for ``max_iterations`` optimiser steps, validate the (EMA) network, keep the best.

    Each iteration: a batch ``{"image": LQ (B,1,H,W), "label": HQ, "task": [B names]}`` from
    ``train_loader`` (restarted when exhausted), ``loss_function(network(LQ), HQ, image=LQ,
    task=tasks)``, backward, optimiser step, ``lr_scheduler.step()`` and ``ema.update_parameters``.
    Every ``val_interval`` iterations and at the end, ``validator(model, tag)`` scores the EMA
    network (or the network itself without EMA); the best-scoring weights are saved as a plain
    state dict to ``ckpt_dir/ckpt_name``. Without a validator, the final weights are saved.

    Distributed (torchrun, ``network`` wrapped in DistributedDataParallel): gradients of learnable
    loss parameters (TaskAdaptiveLoss) are averaged over processes here, since they live outside
    DDP; validation and saving happen on rank 0 while the others wait.

    Args:
        network: the network, possibly DDP-wrapped, already on ``device``.
        loss_function: an objective of ``monai_tat.losses`` (or any ``(output, target, image=, task=)`` callable).
        optimizer: optimiser over the network's and the loss's parameters.
        train_loader: iterable of batches (e.g. a DataLoader with a task-balanced batch sampler).
        max_iterations: optimiser steps.
        device: where batches are moved.
        lr_scheduler: stepped once per iteration (e.g. CosineAnnealingLR with T_max = max_iterations).
        ema: ``monai_tat.training.create_ema(network)`` or None.
        validator: ``callable(model, tag) -> float`` (higher is better), e.g. a :class:`DatalistEvaluator`.
        val_interval: iterations between validations (0: only at the end).
        ckpt_dir, ckpt_name: where the best weights go (``models/model.pt`` in a bundle).
        log_interval: iterations between log lines.
        amp: automatic mixed precision (CUDA).
        grad_clip: max gradient norm, or None.
    """

    def __init__(
        self,
        network: nn.Module,
        loss_function: Callable[..., torch.Tensor],
        optimizer: torch.optim.Optimizer,
        train_loader: Iterable[dict[str, Any]],
        max_iterations: int,
        device: str | torch.device = "cpu",
        lr_scheduler: Any = None,
        ema: nn.Module | None = None,
        validator: Callable[[nn.Module, str], float] | None = None,
        val_interval: int = 0,
        ckpt_dir: str | os.PathLike = "models",
        ckpt_name: str = "model.pt",
        log_interval: int = 100,
        amp: bool = False,
        grad_clip: float | None = None,
    ) -> None:
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {max_iterations}.")
        self.network, self.loss_function, self.optimizer = network, loss_function, optimizer
        self.train_loader = train_loader
        self.max_iterations, self.device = int(max_iterations), torch.device(device)
        self.lr_scheduler, self.ema, self.validator = lr_scheduler, ema, validator
        self.val_interval, self.log_interval = int(val_interval), max(1, int(log_interval))
        self.ckpt_path = Path(ckpt_dir) / ckpt_name
        self.amp = bool(amp) and self.device.type == "cuda"
        self.grad_clip = grad_clip
        self.best_score = -math.inf
        self.best_iteration = 0
        self.iteration = 0

    def _batches(self) -> Iterator[dict[str, Any]]:
        while True:  # an endless sampler never stops; a finite loader is restarted
            yield from self.train_loader

    def _loss_parameters(self) -> list[nn.Parameter]:
        params = getattr(self.loss_function, "parameters", None)
        return [p for p in params() if p.requires_grad] if callable(params) else []

    def train_step(self, batch: dict[str, Any], scaler: torch.amp.GradScaler) -> float:
        """One optimiser step on ``batch``; returns the loss value."""
        image = batch["image"].to(self.device, non_blocking=True).float()
        label = batch["label"].to(self.device, non_blocking=True).float()
        self.network.train()
        if isinstance(self.loss_function, nn.Module):
            self.loss_function.train()
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            output = self.network(image)
            loss = self.loss_function(output, label, image=image, task=batch.get("task"))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {loss.item()} at iteration {self.iteration}; lower the learning rate."
            )
        self.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        distributed, _, world = _distributed()
        if distributed:
            for p in self._loss_parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
        if self.grad_clip:
            scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
        scaler.step(self.optimizer)
        scaler.update()
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(unwrap_model(self.network))
        return float(loss.detach())

    def evaluation_model(self) -> nn.Module:
        """The network that is validated and saved: the EMA copy when there is one."""
        return unwrap_model(self.ema if self.ema is not None else self.network)

    def validate(self) -> None:
        """Score the evaluation model (rank 0) and save it when it is the best so far."""
        distributed, rank, _ = _distributed()
        if rank == 0:
            model = self.evaluation_model()
            if self.validator is None:
                save_state_dict(model, self.ckpt_path)
            else:
                score = float(self.validator(model, f"iteration_{self.iteration:07d}"))
                logger.info("iteration %d: validation score %.4f (best %.4f)", self.iteration, score, self.best_score)
                if self.best_iteration == 0 or score > self.best_score:  # first round always saves
                    self.best_score, self.best_iteration = score, self.iteration
                    save_state_dict(model, self.ckpt_path)
                    logger.info("saved best weights to %s", self.ckpt_path)
        if distributed:
            torch.distributed.barrier()

    def run(self) -> dict[str, float]:
        """Train; returns ``{"iterations", "last_loss", "best_score", "best_iteration"}``."""
        distributed, rank, world = _distributed()
        logger.info("training on rank %d of %d (%s) for %d iterations", rank, world, self.device, self.max_iterations)
        if distributed:
            # DDP broadcasts the network's initial weights; the loss's own parameters start equal too.
            for p in self._loss_parameters():
                torch.distributed.broadcast(p.data, src=0)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        batches = self._batches()
        start, loss = time.perf_counter(), math.nan
        while self.iteration < self.max_iterations:
            loss = self.train_step(next(batches), scaler)
            self.iteration += 1
            if rank == 0 and (self.iteration % self.log_interval == 0 or self.iteration == self.max_iterations):
                lr = self.optimizer.param_groups[0]["lr"]
                rate = self.iteration / max(time.perf_counter() - start, 1e-9)
                logger.info(
                    "iteration %d/%d loss %.5f lr %.3g (%.2f it/s)", self.iteration, self.max_iterations, loss, lr, rate
                )
            last = self.iteration == self.max_iterations
            if last or (self.val_interval > 0 and self.iteration % self.val_interval == 0):
                if self.validator is not None or last:
                    self.validate()
        return {
            "iterations": float(self.iteration),
            "last_loss": loss,
            "best_score": self.best_score,
            "best_iteration": float(self.best_iteration),
        }
