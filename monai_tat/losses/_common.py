"""Helpers shared by the restoration objectives: per-sample L1 and task-name lookup."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from monai_tat.errors import UserInputError

__all__ = ["DEFAULT_TASKS", "per_sample_l1", "task_indices", "require_tensor"]

# Same names and order as ``monai_tat.transforms.TASKS``; kept here so that losses import nothing
# but torch (they are used by code that has no reason to load the transforms).
DEFAULT_TASKS: tuple[str, ...] = ("ct", "pet", "mri")


def per_sample_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each sample.

    Args:
        a, b: tensors of the same shape (B, ...) in model intensity units.

    Returns:
        (B,) tensor, the L1 distance of each sample averaged over all non-batch elements.
    """
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} and {tuple(b.shape)}; pass matching tensors.")
    return (a - b).abs().flatten(1).mean(dim=1)


def task_indices(task: Sequence[str] | torch.Tensor, tasks: Sequence[str], device: torch.device) -> torch.Tensor:
    """Turn the ``task`` entry of a batch into indices into ``tasks``.

    Args:
        task: one task name per sample (what a DataLoader collates from ``{"task": "ct"}`` items),
            or a (B,) integer tensor of indices already.
        tasks: the task names the loss was built with.
        device: where the returned tensor lives.

    Returns:
        (B,) int64 tensor.
    """
    if isinstance(task, torch.Tensor):
        idx = task.to(device=device, dtype=torch.long).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= len(tasks)):
            raise UserInputError(f"task indices must lie in [0, {len(tasks) - 1}]; got {idx.tolist()}.")
        return idx
    if isinstance(task, str):
        task = [task]
    lookup = {name: i for i, name in enumerate(tasks)}
    unknown = sorted({t for t in task if t not in lookup})
    if unknown:
        raise UserInputError(
            f"unknown task {unknown}; this loss was built for tasks {list(tasks)}: "
            "fix the datalist's 'task' entries or pass tasks=[...] to the loss."
        )
    return torch.tensor([lookup[t] for t in task], dtype=torch.long, device=device)


def require_tensor(output: object, loss_name: str) -> torch.Tensor:
    """Reject the (image, balance_loss) tuple that AMIR returns in training with a clear message."""
    if isinstance(output, (tuple, list)):
        raise TypeError(
            f"{loss_name} got a tuple network output (AMIR in training mode returns (image, balance_loss)); "
            "use monai_tat.losses.AMIRLoss for AMIR, or pass the image tensor only."
        )
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"{loss_name} expects a tensor prediction, got {type(output).__name__}.")
    return output
