"""Fine-tuning one task while holding the others where a finished network had them.

Fine-tuning an all-in-one network on batches weighted toward one task moves the shared weights,
and with them the other tasks' behaviour (on the demo TAT, an MRI-weighted fine-tune made quiet
PET maps smoother than before). :class:`TeacherAnchoredLoss` keeps those tasks anchored: for the
samples of the anchored tasks the training target is the frozen teacher's restoration of the same
input instead of the reference, so the student is asked to keep answering those inputs as the
teacher did ("learning without forgetting"), while the other tasks learn from their references.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["TeacherAnchoredLoss"]


class TeacherAnchoredLoss(nn.Module):
    """An objective whose targets, for the samples of ``anchored_tasks``, are a frozen teacher's output.

    The teacher is held outside the module's registry: it is neither in :meth:`parameters` (the
    optimiser never sees it) nor in :meth:`state_dict` (checkpoints hold the objective's own state
    only), and it follows the input's device at each call.

    Args:
        objective: the training objective, called as ``objective(prediction, target, image=, task=)``
            (:mod:`monai_tat.losses`); its parameters are this module's parameters.
        teacher: the network to stay close to on the anchored tasks, same input and output
            convention as the student (``(B, 1, H, W)`` in model intensity units). It is put in
            eval mode with its gradients off.
        anchored_tasks: task names whose samples get the teacher's output as target.
        teacher_fraction: target = ``f * teacher + (1 - f) * reference`` for anchored samples
            (1 = the teacher's output alone).

    Example::

        loss = TeacherAnchoredLoss(TaskAdaptiveLoss(), load_model("tat"), anchored_tasks=("ct", "pet"))
        value = loss(net(lq), hq, image=lq, task=["ct", "mri", "pet"])
    """

    def __init__(self, objective: nn.Module, teacher: nn.Module, anchored_tasks: Sequence[str] = ("ct", "pet"),
                 teacher_fraction: float = 1.0) -> None:
        super().__init__()
        if not isinstance(teacher, nn.Module):
            raise TypeError(f"teacher must be a torch.nn.Module, got {type(teacher).__name__}")
        if not 0.0 <= float(teacher_fraction) <= 1.0:
            raise ValueError(f"teacher_fraction must lie in [0, 1], got {teacher_fraction}")
        if isinstance(anchored_tasks, str) or not anchored_tasks:
            raise ValueError(f"anchored_tasks must be a non-empty sequence of task names, got {anchored_tasks!r}")
        self.objective = objective
        self.anchored_tasks = tuple(anchored_tasks)
        self.teacher_fraction = float(teacher_fraction)
        teacher.eval().requires_grad_(False)
        # A plain list keeps the teacher out of parameters() and state_dict().
        self._teacher = [teacher]

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def anchored_mask(self, task: object, batch: int) -> torch.Tensor:
        """(B,) bool: which samples of the batch belong to an anchored task."""
        if task is None:
            raise ValueError("TeacherAnchoredLoss needs each sample's task (give the batch's 'task' list)")
        names = [str(t) for t in task]
        if len(names) != batch:
            raise ValueError(f"{len(names)} task names for a batch of {batch} samples")
        return torch.tensor([t in self.anchored_tasks for t in names], dtype=torch.bool)

    @torch.no_grad()
    def anchored_target(self, target: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``target`` with the anchored samples replaced by (a blend with) the teacher's restoration."""
        if not bool(mask.any()):
            return target
        teacher = self.teacher.to(image.device)
        rows = mask.to(image.device)
        answer = teacher(image[rows])
        if isinstance(answer, (tuple, list)):  # AMIR in training mode also returns its routing term
            answer = answer[0]
        blended = target.clone()
        f = self.teacher_fraction
        blended[rows] = f * answer.to(target.dtype) + (1.0 - f) * target[rows]
        return blended

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, image: torch.Tensor | None = None,
                task: object = None) -> torch.Tensor:
        """The objective's value with the anchored samples' targets taken from the teacher.

        Args:
            prediction, target, image: ``(B, 1, H, W)``; ``image`` is the low-quality input.
            task: the B samples' task names.
        """
        if image is None:
            raise ValueError("TeacherAnchoredLoss needs the low-quality input (image=) to run the teacher")
        reference = prediction[0] if isinstance(prediction, (tuple, list)) else prediction
        mask = self.anchored_mask(task, reference.shape[0])
        return self.objective(prediction, self.anchored_target(target, image, mask), image=image, task=task)
