"""Task-level uncertainty weighting (Kendall et al., CVPR 2018; TAT paper eq. 4, its ablation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from monai_tat.losses._common import DEFAULT_TASKS, per_sample_l1, require_tensor, task_indices

__all__ = ["TaskLevelUncertaintyLoss"]


class TaskLevelUncertaintyLoss(nn.Module):
    """One learnable sigma per task: ``sum_t 1/(2 sigma_t^2) * L1_t + log sigma_t`` (eq. 4).

    ``L1_t`` is the mean L1 error of the batch's samples of task t; tasks absent from a batch add
    nothing (their sigma gets no gradient). The parameter is ``log_variance = log sigma_t^2``
    (initialised to 0, sigma = 1), the usual parameterisation that keeps sigma positive and the
    optimisation stable; ``0.5 * exp(-s) * L + 0.5 * s`` equals eq. 4 with ``s = log sigma^2``.

    Args:
        tasks: task names in index order (default ``("ct", "pet", "mri")``).

    Example::

        loss_fn = TaskLevelUncertaintyLoss()
        loss = loss_fn(net(lq), hq, task=["ct", "pet", "mri", "ct"])
    """

    def __init__(self, tasks: Sequence[str] = DEFAULT_TASKS) -> None:
        super().__init__()
        if not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be a non-empty list of distinct names, got {list(tasks)}.")
        self.tasks = tuple(tasks)
        self.log_variance = nn.Parameter(torch.zeros(len(self.tasks)))

    @property
    def sigma(self) -> torch.Tensor:
        """(T,) current sigma of each task, in the order of ``tasks``."""
        return torch.exp(0.5 * self.log_variance)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        image: torch.Tensor | None = None,
        task: Sequence[str] | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Task-balanced loss of a batch.

        Args:
            pred: (B, C, H, W) network output.
            target: (B, C, H, W) high-quality image.
            image: ignored; accepted so that every objective of this package has the same call.
            task: (B,) task names (or indices into ``tasks``), one per sample (required).

        Returns:
            scalar tensor.
        """
        pred = require_tensor(pred, type(self).__name__)
        if task is None:
            raise ValueError("TaskLevelUncertaintyLoss needs the task of each sample: loss(pred, target, task=[...]).")
        idx = task_indices(task, self.tasks, pred.device)
        if idx.numel() != pred.shape[0]:
            raise ValueError(f"got {idx.numel()} task entries for a batch of {pred.shape[0]} samples.")
        error = per_sample_l1(pred, target)
        num_tasks = len(self.tasks)
        counts = torch.bincount(idx, minlength=num_tasks).to(error.dtype)
        task_error = torch.zeros(num_tasks, dtype=error.dtype, device=error.device).index_add(0, idx, error)
        present = counts > 0
        task_error = task_error[present] / counts[present]
        s = self.log_variance[present]
        return (0.5 * torch.exp(-s) * task_error + 0.5 * s).sum()
