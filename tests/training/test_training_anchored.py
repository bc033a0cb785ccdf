"""TeacherAnchoredLoss: anchored samples are trained toward the frozen teacher's output, the others
toward their references; the teacher is never trained, saved or handed to the optimiser."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_tat.losses import TaskAdaptiveLoss
from monai_tat.training import TeacherAnchoredLoss


class RecordingL1(nn.Module):
    """Mean L1 objective that remembers the target it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen_target: torch.Tensor | None = None

    def forward(self, prediction, target, image=None, task=None):
        self.seen_target = target.detach().clone()
        return self.scale * (prediction - target).abs().mean()


class AddOne(nn.Module):
    """A teacher whose answer is easy to recognise: the input plus one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=True)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.fill_(1.0)

    def forward(self, x):
        return self.conv(x)


def _batch():
    torch.manual_seed(0)
    image = torch.rand(3, 1, 8, 8)
    target = torch.rand(3, 1, 8, 8) + 5.0
    return image, target


def test_anchored_samples_get_the_teachers_output_as_target():
    image, target = _batch()
    objective = RecordingL1()
    loss = TeacherAnchoredLoss(objective, AddOne(), anchored_tasks=("ct", "pet"))
    prediction = torch.zeros_like(target, requires_grad=True)
    loss(prediction, target, image=image, task=["ct", "mri", "pet"])
    seen = objective.seen_target
    assert torch.allclose(seen[0], image[0] + 1.0) and torch.allclose(seen[2], image[2] + 1.0)
    assert torch.equal(seen[1], target[1])  # the learning task keeps its reference
    assert torch.equal(target, _batch()[1])  # the caller's tensor is not modified


def test_teacher_fraction_blends_teacher_and_reference():
    image, target = _batch()
    objective = RecordingL1()
    loss = TeacherAnchoredLoss(objective, AddOne(), anchored_tasks=["pet"], teacher_fraction=0.25)
    loss(torch.zeros_like(target), target, image=image, task=["pet", "mri", "mri"])
    assert torch.allclose(objective.seen_target[0], 0.25 * (image[0] + 1.0) + 0.75 * target[0])
    assert torch.equal(objective.seen_target[1:], target[1:])


def test_a_student_that_answers_as_the_teacher_has_no_loss_on_anchored_tasks():
    image, target = _batch()
    teacher = AddOne()
    loss = TeacherAnchoredLoss(RecordingL1(), teacher, anchored_tasks=("ct", "pet"))
    value = loss(teacher(image).detach(), target, image=image, task=["ct", "pet", "ct"])
    assert value.item() == pytest.approx(0.0, abs=1e-7)
    # Against the references the same prediction is far off (targets are ~5 above).
    assert RecordingL1()(teacher(image).detach(), target).item() > 3.0


def test_teacher_is_frozen_and_outside_parameters_and_state_dict():
    teacher = AddOne().train()
    loss = TeacherAnchoredLoss(TaskAdaptiveLoss(), teacher)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    teacher_params = {id(p) for p in teacher.parameters()}
    assert not teacher_params & {id(p) for p in loss.parameters()}
    assert all(key.startswith("objective.") for key in loss.state_dict())
    image, target = _batch()
    student = nn.Conv2d(1, 1, 3, padding=1)
    value = loss(student(image), target, image=image, task=["ct", "mri", "pet"])
    value.backward()
    assert student.weight.grad is not None and all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("task, message", [(None, "task"), (["ct", "mri"], "2 task names for a batch of 3")])
def test_missing_or_wrong_task_names_are_refused(task, message):
    image, target = _batch()
    loss = TeacherAnchoredLoss(RecordingL1(), AddOne())
    with pytest.raises(ValueError, match=message):
        loss(torch.zeros_like(target), target, image=image, task=task)
    with pytest.raises(ValueError, match="low-quality input"):
        loss(torch.zeros_like(target), target, task=["ct", "ct", "ct"])


@pytest.mark.parametrize("kwargs", [{"anchored_tasks": ()}, {"anchored_tasks": "ct"}, {"teacher_fraction": 1.5}])
def test_wrong_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        TeacherAnchoredLoss(RecordingL1(), AddOne(), **kwargs)
