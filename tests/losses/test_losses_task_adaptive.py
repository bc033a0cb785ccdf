"""TaskAdaptiveLoss: value at initialisation, sign of the sigma gradient, stop-gradient, learning."""

from __future__ import annotations

import math

import pytest
import torch

from monai_tat.losses import TaskAdaptiveLoss


def _batch(errors: list[float], size: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LQ, HQ, prediction whose per-sample L1 errors are exactly ``errors``."""
    hq = torch.full((len(errors), 1, size, size), 0.5)
    lq = hq + 0.3
    pred = hq + torch.tensor(errors).view(-1, 1, 1, 1)
    return lq, hq, pred


def test_initial_sigma_is_one_and_value_matches_formula() -> None:
    loss_fn = TaskAdaptiveLoss()
    lq, hq, pred = _batch([0.1, 0.4])
    stats = loss_fn.sample_statistics(pred, hq, lq)
    torch.testing.assert_close(stats[:, 0], torch.tensor([0.3, 0.3]))
    torch.testing.assert_close(stats[:, 1], torch.tensor([0.2, 0.1]))
    torch.testing.assert_close(stats[:, 2], torch.tensor([0.1, 0.4]))
    sigma = loss_fn.sigma_estimator(stats)
    torch.testing.assert_close(sigma, torch.ones(2))
    expected = torch.tensor([0.5 / (1 + 1e-8) * c + 0.5 * math.log(2.0) for c in (0.1, 0.4)]).mean()
    torch.testing.assert_close(loss_fn(pred, hq, image=lq), expected)


@pytest.mark.parametrize("form, sigma0, small, large", [("reference", 1.0, 0.05, 0.9), ("paper", 0.5, 0.05, 0.9)])
def test_sigma_gradient_sign_follows_error(form: str, sigma0: float, small: float, large: float) -> None:
    """Gradient descent raises sigma for the sample whose error dominates and lowers it for the other."""
    loss_fn = TaskAdaptiveLoss(form=form)
    sigma = torch.full((2,), sigma0, requires_grad=True)
    loss_fn.weighted_loss(torch.tensor([small, large]), sigma).sum().backward()
    assert sigma.grad[0] > 0, "small error: descent should shrink sigma (raise the sample's weight)"
    assert sigma.grad[1] < 0, "dominating error: descent should grow sigma (lower the sample's weight)"


def test_sigma_estimator_gradient_sign_per_sample() -> None:
    """Through the MLP: the output bias (= sigma at initialisation) is pushed up by a large error only."""
    grads = []
    for err in (0.05, 0.9):
        loss_fn = TaskAdaptiveLoss()
        lq, hq, pred = _batch([err])
        loss_fn(pred, hq, image=lq).backward()
        grads.append(loss_fn.sigma_estimator.head.bias.grad.item())
    assert grads[0] > 0 > grads[1]


@pytest.mark.parametrize("form", ["reference", "paper"])
def test_learned_sigma_is_larger_for_dominating_sample(form: str) -> None:
    torch.manual_seed(0)
    loss_fn = TaskAdaptiveLoss(form=form)
    opt = torch.optim.Adam(loss_fn.parameters(), lr=1e-2)
    lq, hq, pred = _batch([0.02, 0.3])
    for _ in range(300):
        opt.zero_grad()
        loss_fn(pred, hq, image=lq).backward()
        opt.step()
    sigma = loss_fn.sigma_estimator(loss_fn.sample_statistics(pred, hq, lq)).abs()
    assert sigma[1] > 1.5 * sigma[0]
    # The minimiser of each form: reference sigma^2 = (c + sqrt(c^2 + 4c)) / 2, paper sigma^2 = c.
    c = torch.tensor([0.02, 0.3])
    optimum = (c + torch.sqrt(c**2 + 4 * c)) / 2 if form == "reference" else c
    torch.testing.assert_close(sigma.detach() ** 2, optimum, rtol=0.1, atol=1e-3)


def test_stop_gradient_prediction_gradient_is_weighted_l1_only() -> None:
    torch.manual_seed(0)
    loss_fn = TaskAdaptiveLoss()
    torch.nn.init.normal_(loss_fn.sigma_estimator.head.weight)  # sigma now depends on the statistics
    hq = torch.rand(3, 1, 6, 6)
    lq = hq + 0.1 * torch.randn_like(hq)
    pred = (hq + 0.2 * torch.randn_like(hq)).requires_grad_(True)
    loss_fn(pred, hq, image=lq).backward()
    with torch.no_grad():
        sigma = loss_fn.sigma_estimator(loss_fn.sample_statistics(pred, hq, lq))
        weight = 0.5 / (sigma**2 + 1e-8) / (6 * 6) / 3
        expected = weight.view(-1, 1, 1, 1) * torch.sign(pred - hq)
    torch.testing.assert_close(pred.grad, expected)


def test_parameters_are_learnable_and_receive_gradients() -> None:
    loss_fn = TaskAdaptiveLoss()
    params = list(loss_fn.parameters())
    assert params and all(p.requires_grad for p in params)
    lq, hq, pred = _batch([0.1, 0.2])
    loss_fn(pred, hq, image=lq).backward()
    assert loss_fn.sigma_estimator.head.bias.grad is not None


def test_rejects_tuple_output_and_missing_input() -> None:
    loss_fn = TaskAdaptiveLoss()
    lq, hq, pred = _batch([0.1])
    with pytest.raises(TypeError, match="AMIRLoss"):
        loss_fn((pred, torch.tensor(0.0)), hq, image=lq)
    with pytest.raises(ValueError, match="low-quality input"):
        loss_fn(pred, hq)
    with pytest.raises(ValueError, match="form"):
        TaskAdaptiveLoss(form="other")
