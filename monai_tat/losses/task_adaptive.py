"""TAT's task-adaptive (sample-level) loss balancing (Yang et al., MICCAI 2025, Sec. 2.3)."""

from __future__ import annotations

import torch
from torch import nn

from monai_tat.losses._common import per_sample_l1, require_tensor

__all__ = ["SigmaEstimator", "TaskAdaptiveLoss"]


class SigmaEstimator(nn.Module):
    """Small MLP that maps three per-sample L1 distances to that sample's sigma.

    Linear(3, hidden) -> residual block [LayerNorm, Linear(hidden, expansion), GELU,
    Linear(expansion, hidden)] + skip -> Linear(hidden, 1). The last layer starts at weight 0 and
    bias 1 so that every sample starts with sigma = 1, i.e. the plain L1 loss up to a constant.

    Args:
        hidden: width of the residual stream (16 in TAT).
        expansion: width inside the residual block (256 in TAT).
    """

    def __init__(self, hidden: int = 16, expansion: int = 256) -> None:
        super().__init__()
        self.embed = nn.Linear(3, hidden)
        self.block = nn.Sequential(
            nn.LayerNorm(hidden), nn.Linear(hidden, expansion), nn.GELU(), nn.Linear(expansion, hidden)
        )
        self.head = nn.Linear(hidden, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.ones_(self.head.bias)

    def forward(self, stats: torch.Tensor) -> torch.Tensor:
        """(B, 3) distances -> (B,) sigma (may take any sign; only sigma^2 enters the loss)."""
        h = self.embed(stats)
        h = h + self.block(h)
        return self.head(h).squeeze(-1)


class TaskAdaptiveLoss(nn.Module):
    """Sample-level uncertainty weighting of the L1 restoration loss (TAT's loss balancing).

    For each sample, with LQ input ``image``, prediction ``pred`` and HQ ``target`` (all in model
    intensity units), three L1 distances a = |LQ - HQ|, b = |LQ - pred|, c = |pred - HQ| describe its
    training state. A small MLP (:class:`SigmaEstimator`) reads them with the gradient stopped and
    returns sigma; the loss then down-weights samples whose error dominates:

    - ``form="reference"`` (default, the authors' code that produced the published numbers):
      ``mean(0.5 / (sigma^2 + 1e-8) * c + 0.5 * log(1 + sigma^2))``
    - ``form="paper"`` (eq. 5-6): ``mean(0.5 / sigma^2 * c + log|sigma|)``, with ``log|sigma|``
      computed as ``0.5 * log(sigma^2 + eps)`` so that a sign change of the MLP output is harmless.

    In both forms the sigma minimising the loss grows with c, so a sample whose restoration error
    is large gets a larger sigma and a smaller weight 1 / (2 sigma^2).

    The module has learnable parameters: give them to the optimiser together with the network's,
    e.g. ``AdamW([*net.parameters(), *loss.parameters()])``.

    Args:
        form: ``"reference"`` or ``"paper"``.
        hidden, expansion: widths of the sigma MLP (TAT: 16 and 256).
        eps: added to sigma^2 in the weight (and inside the log of the paper form).

    Example::

        loss_fn = TaskAdaptiveLoss()
        loss = loss_fn(net(lq), hq, image=lq)
    """

    FORMS = ("reference", "paper")

    def __init__(self, form: str = "reference", hidden: int = 16, expansion: int = 256, eps: float = 1e-8) -> None:
        super().__init__()
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {self.FORMS}, got {form!r}.")
        self.form = form
        self.eps = eps
        self.sigma_estimator = SigmaEstimator(hidden=hidden, expansion=expansion)

    def sample_statistics(self, pred: torch.Tensor, target: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """(B, 3) tensor [L1(LQ, HQ), L1(LQ, pred), L1(pred, HQ)] per sample, with the graph kept."""
        return torch.stack(
            [per_sample_l1(image, target), per_sample_l1(image, pred), per_sample_l1(pred, target)], dim=1
        )

    def weighted_loss(self, error: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Per-sample balanced loss from the restoration error c (B,) and sigma (B,); returns (B,)."""
        sigma_sq = sigma.square()
        data_term = 0.5 / (sigma_sq + self.eps) * error
        if self.form == "reference":
            return data_term + 0.5 * torch.log1p(sigma_sq)
        return data_term + 0.5 * torch.log(sigma_sq + self.eps)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        image: torch.Tensor | None = None,
        task: object = None,
    ) -> torch.Tensor:
        """Balanced loss of a batch.

        Args:
            pred: (B, C, H, W) network output.
            target: (B, C, H, W) high-quality image.
            image: (B, C, H, W) low-quality network input (required).
            task: ignored; accepted so that every objective of this package has the same call.

        Returns:
            scalar tensor, the batch mean of the per-sample balanced losses.
        """
        pred = require_tensor(pred, type(self).__name__)
        if image is None:
            raise ValueError("TaskAdaptiveLoss needs the low-quality input: call loss(pred, target, image=lq).")
        stats = self.sample_statistics(pred, target, image)
        # Stop-gradient: sigma follows the training state but must not steer the restoration itself.
        sigma = self.sigma_estimator(stats.detach())
        return self.weighted_loss(stats[:, 2], sigma).mean()
