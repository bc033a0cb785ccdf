"""Patch rank correlation between a confidence map and the error of a restoration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_tat.errors import UserInputError
from monai_tat.metrics.confidence_calibration import patch_means, patch_rank_correlation


def test_patch_means_of_a_volume_sliced_along_an_axis() -> None:
    volume = np.zeros((4, 8, 2))
    volume[:, :4, 1] = 3.0  # slice 1, first patch column along J
    means = patch_means(volume, patch=4, axis=2)
    np.testing.assert_array_equal(means, [0.0, 0.0, 3.0, 0.0])


def test_a_map_proportional_to_the_error_ranks_patches_perfectly() -> None:
    rng = np.random.default_rng(1)
    scale = np.kron(rng.uniform(0.1, 5.0, size=(6, 6)), np.ones((8, 8)))  # per-patch error level
    error = torch.from_numpy(scale * np.where(rng.random(scale.shape) < 0.5, -1.0, 1.0))
    assert patch_rank_correlation(torch.from_numpy(scale), error, patch=8) == pytest.approx(1.0)
    assert patch_rank_correlation(torch.from_numpy(-scale), error, patch=8) == pytest.approx(-1.0)


def test_constant_map_gives_nan_and_bad_maps_are_refused() -> None:
    error = torch.randn(16, 16)
    assert math.isnan(patch_rank_correlation(torch.ones(16, 16), error, patch=4))
    with pytest.raises(UserInputError, match="shape"):
        patch_rank_correlation(torch.ones(16, 8), error, patch=4)
    bad = torch.ones(16, 16)
    bad[3, 3] = float("nan")
    with pytest.raises(UserInputError, match="NaN"):
        patch_rank_correlation(bad, error, patch=4)
    with pytest.raises(UserInputError, match="does not fit"):
        patch_rank_correlation(torch.ones(16, 16), error, patch=32)
