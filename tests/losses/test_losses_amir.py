"""AMIRLoss: L1 + 0.001 x balance loss when the network is in training mode, plain L1 otherwise."""

from __future__ import annotations

import torch
from torch import nn

from monai_tat.losses import AMIRLoss


class _RoutingStandIn(nn.Module):
    """Behaves like AMIR's forward contract: (image, balance_loss) in training, image in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y = x * self.scale
        if self.training:
            return y, 3.0 * self.scale**2
        return y


def test_balance_term_in_training_only() -> None:
    net, loss_fn = _RoutingStandIn(), AMIRLoss()
    x = torch.rand(2, 1, 8, 8)
    target = x.clone()
    l1 = (0.1 * x).abs().mean()
    net.train()
    torch.testing.assert_close(loss_fn(net(x), target), l1 + 0.001 * 3.0 * 1.1**2)
    net.eval()
    torch.testing.assert_close(loss_fn(net(x), target), l1)


def test_balance_gradient_reaches_network_and_weight_zero_is_plain_l1() -> None:
    net = _RoutingStandIn().train()
    x = torch.rand(2, 1, 8, 8)
    out = net(x)
    AMIRLoss(balance_weight=0.0)(out, x).backward()
    g_plain = net.scale.grad.clone()
    net.zero_grad()
    AMIRLoss()(net(x), x).backward()
    torch.testing.assert_close(net.scale.grad - g_plain, torch.tensor(0.001 * 6.0 * 1.1))
    assert list(AMIRLoss().parameters()) == []
