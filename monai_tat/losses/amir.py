"""AMIR's objective: L1 plus the weighted routing balance loss (Yang et al., MICCAI 2024)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AMIRLoss"]


class AMIRLoss(nn.Module):
    """``L1(pred, target) + balance_weight * balance_loss``.

    AMIR returns ``(image, balance_loss)`` in training mode and the image alone in eval mode, so the
    balance term (the sum of the spatial routing modules' importance/load losses) enters only during
    training. With ``balance_weight=0`` (or a network returning a tensor) this is the plain L1
    loss, i.e. the "w/o loss balancing" ablation of TAT.

    Args:
        balance_weight: weight of the routing balance loss (AMIR: 0.001).

    Example::

        loss_fn = AMIRLoss()
        loss = loss_fn(amir(lq), hq)      # amir.train(): L1 + 0.001 * balance
    """

    def __init__(self, balance_weight: float = 1e-3) -> None:
        super().__init__()
        self.balance_weight = float(balance_weight)

    def forward(
        self,
        output: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        target: torch.Tensor,
        image: torch.Tensor | None = None,
        task: object = None,
    ) -> torch.Tensor:
        """Loss of a batch.

        Args:
            output: (B, C, H, W) prediction, or the training-mode pair (prediction, scalar balance loss).
            target: (B, C, H, W) high-quality image.
            image, task: ignored; accepted so that every objective of this package has the same call.

        Returns:
            scalar tensor.
        """
        balance = None
        if isinstance(output, (tuple, list)):
            if len(output) != 2:
                raise ValueError(f"expected (prediction, balance_loss), got a sequence of {len(output)} items.")
            output, balance = output
        loss = nn.functional.l1_loss(output, target)
        if balance is not None and self.balance_weight != 0.0:
            loss = loss + self.balance_weight * balance
        return loss
