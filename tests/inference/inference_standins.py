"""Stand-in restoration networks for engine and CLI tests (any H and W, batch-independent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Smoother(nn.Module):
    """A batch-independent stand-in restorer: ``x + 0.5 * (mean3x3(x) - x)``, any H and W.

    Records the shape of every input batch in ``calls``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        local = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return x + self.scale * (local - x)


class Identity(nn.Module):
    """Returns its input; records the largest input value seen."""

    def __init__(self) -> None:
        super().__init__()
        self.max_seen = -float("inf")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.max_seen = max(self.max_seen, float(x.max()))
        return x.clone()


class Skewed(nn.Module):
    """Not equivariant to flips: a fixed asymmetric 3x3 kernel plus a column ramp."""

    def __init__(self) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3) / 36.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 0.1, x.shape[-1], dtype=x.dtype)
        return F.conv2d(x, self.kernel, padding=1) + ramp
