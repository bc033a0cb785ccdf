"""TaskLevelUncertaintyLoss: one sigma per task, eq. 4 value, gradients only for present tasks."""

from __future__ import annotations

import pytest
import torch

from monai_tat.errors import UserInputError
from monai_tat.losses import TaskLevelUncertaintyLoss


def _pred_target(errors: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.zeros(len(errors), 1, 4, 4)
    return target + torch.tensor(errors).view(-1, 1, 1, 1), target


def test_one_sigma_per_task() -> None:
    loss_fn = TaskLevelUncertaintyLoss()
    assert loss_fn.tasks == ("ct", "pet", "mri")
    assert [tuple(p.shape) for p in loss_fn.parameters()] == [(3,)]
    torch.testing.assert_close(loss_fn.sigma, torch.ones(3))
    assert TaskLevelUncertaintyLoss(tasks=["ct"]).log_variance.shape == (1,)


def test_value_and_gradient_only_for_tasks_in_batch() -> None:
    loss_fn = TaskLevelUncertaintyLoss()
    with torch.no_grad():
        loss_fn.log_variance.copy_(torch.tensor([0.5, -0.2, 1.0]))
    pred, target = _pred_target([0.1, 0.3, 0.4])
    loss = loss_fn(pred, target, task=["ct", "ct", "mri"])
    s_ct, s_mri = 0.5, 1.0
    expected = 0.5 * torch.exp(torch.tensor(-s_ct)) * 0.2 + 0.5 * s_ct + 0.5 * torch.exp(torch.tensor(-s_mri)) * 0.4
    expected = expected + 0.5 * s_mri
    torch.testing.assert_close(loss, expected)
    loss.backward()
    grad = loss_fn.log_variance.grad
    assert grad[1] == 0 and grad[0] != 0 and grad[2] != 0


def test_task_indices_equal_task_names() -> None:
    loss_fn = TaskLevelUncertaintyLoss()
    pred, target = _pred_target([0.1, 0.2, 0.3])
    by_name = loss_fn(pred, target, task=["pet", "mri", "ct"])
    by_index = loss_fn(pred, target, task=torch.tensor([1, 2, 0]))
    torch.testing.assert_close(by_name, by_index)


def test_sigma_grows_for_dominating_task() -> None:
    loss_fn = TaskLevelUncertaintyLoss()
    opt = torch.optim.Adam(loss_fn.parameters(), lr=5e-2)
    pred, target = _pred_target([0.5, 0.5, 0.05, 0.05, 0.01, 0.01])
    tasks = ["ct", "ct", "pet", "pet", "mri", "mri"]
    for _ in range(400):
        opt.zero_grad()
        loss_fn(pred, target, task=tasks).backward()
        opt.step()
    sigma = loss_fn.sigma.detach()
    assert sigma[0] > sigma[1] > sigma[2]
    # Minimiser of 0.5 exp(-s) L + 0.5 s is sigma^2 = L.
    torch.testing.assert_close(sigma**2, torch.tensor([0.5, 0.05, 0.01]), rtol=0.05, atol=1e-3)


def test_bad_task_input() -> None:
    loss_fn = TaskLevelUncertaintyLoss()
    pred, target = _pred_target([0.1, 0.2])
    with pytest.raises(UserInputError, match="unknown task"):
        loss_fn(pred, target, task=["ct", "xray"])
    with pytest.raises(ValueError, match="task of each sample"):
        loss_fn(pred, target)
    with pytest.raises(ValueError, match="2 samples"):
        loss_fn(pred, target, task=["ct"])
