"""Paired comparison of two methods on the same images, as in the papers' significance tests."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

from monai_tat.errors import UserInputError

__all__ = ["PairedComparison", "paired_comparison"]


@dataclass(frozen=True)
class PairedComparison:
    """Result of :func:`paired_comparison`; differences are ``a - b``."""

    n: int
    mean_a: float
    mean_b: float
    mean_difference: float
    std_difference: float
    t_statistic: float
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        """True when the paired t-test rejects equal means at level ``alpha`` (papers: 0.05)."""
        return bool(self.p_value < alpha)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def paired_comparison(a: Any, b: Any) -> PairedComparison:
    """Mean difference and two-sided paired t-test (``scipy.stats.ttest_rel``) of two methods.

    Args:
        a, b: one value per image (e.g. per-slice PSNR) of methods A and B on the same images, same
            order. Pairs where either value is not finite (NaN from a constant label, inf PSNR of
            an exact match) are left out.

    Returns:
        :class:`PairedComparison`. With fewer than two pairs the t statistic and p-value are NaN;
        when every difference is the same the test degenerates: p = 1 for all-zero differences,
        p = 0 otherwise.
    """
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise UserInputError(f"paired comparison needs the same number of values, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    n = int(x.size)
    if n == 0:
        return PairedComparison(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    d = x - y
    mean_d = float(d.mean())
    std_d = float(d.std(ddof=1)) if n > 1 else math.nan
    if n < 2:
        t, p = math.nan, math.nan
    elif np.all(d == d[0]):
        t, p = (0.0, 1.0) if d[0] == 0 else (math.copysign(math.inf, d[0]), 0.0)
    else:
        result = stats.ttest_rel(x, y)
        t, p = float(result.statistic), float(result.pvalue)
    return PairedComparison(n, float(x.mean()), float(y.mean()), mean_d, std_d, t, p)
