"""Paired comparison of two methods: mean difference and the paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_tat.errors import UserInputError
from monai_tat.metrics import paired_comparison


def test_paired_t_test_by_hand():
    a = np.array([30.0, 31.0, 33.0, 32.0])
    b = np.array([29.0, 30.5, 31.0, 31.5])
    d = a - b  # 1.0, 0.5, 2.0, 0.5
    t = d.mean() / (d.std(ddof=1) / math.sqrt(4))
    result = paired_comparison(a, b)
    assert result.n == 4
    assert result.mean_difference == pytest.approx(1.0)
    assert result.mean_a == pytest.approx(31.5) and result.mean_b == pytest.approx(30.5)
    assert result.t_statistic == pytest.approx(t)
    # Two-sided p from the t distribution with 3 degrees of freedom (t = 2.8284...): 0.0663...
    from scipy.stats import t as t_dist

    assert result.p_value == pytest.approx(2 * t_dist.sf(t, 3))
    assert not result.significant()


def test_non_finite_pairs_dropped_and_degenerate_cases():
    result = paired_comparison([1.0, np.nan, 3.0, np.inf], [0.5, 2.0, 2.0, 1.0])
    assert result.n == 2 and result.mean_difference == pytest.approx(0.75)
    same = paired_comparison([1.0, 2.0], [1.0, 2.0])
    assert same.p_value == 1.0 and same.mean_difference == 0.0
    shifted = paired_comparison([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert shifted.p_value == 0.0 and shifted.significant()
    assert math.isnan(paired_comparison([1.0], [2.0]).p_value)
    with pytest.raises(UserInputError):
        paired_comparison([1.0, 2.0], [1.0])
