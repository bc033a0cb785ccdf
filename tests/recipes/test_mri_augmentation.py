"""MRI augmentation: resampling keeps the field of view, the pair differs by the truncation only."""

from __future__ import annotations

import numpy as np
import pytest

from pair_simulation import MRI_AUGMENT, mri_augment, mri_pair, pixel_range, resample_in_plane, rician_noise
from monai_tat.transforms import KSpaceTruncation


def _head(n: int, slices: int = 2) -> np.ndarray:
    """A bright ring (scalp) around a darker disc with a small bright core, well inside the matrix."""
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    r = np.hypot(xx, yy)
    image = np.where(r < 0.4 * n, 800.0, 0.0)
    image[r < 0.34 * n] = 300.0
    image[r < 0.08 * n] = 600.0
    return np.repeat(image[:, :, None], slices, axis=2).astype(np.float32)


def _edges(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World positions of the outer corners of voxel (0, 0, 0) and voxel (I-1, J-1, 0)."""
    first = affine @ np.array([-0.5, -0.5, 0.0, 1.0])
    last = affine @ np.array([shape[0] - 0.5, shape[1] - 0.5, 0.0, 1.0])
    return np.stack([first[:3], last[:3]])


@pytest.mark.parametrize("pixel_mm", [0.6, 1.0, 1.6])
def test_resampling_keeps_the_field_of_view_the_slice_axis_and_the_signal(pixel_mm):
    from scipy.ndimage import gaussian_filter

    affine = np.array([[-0.9, 0, 0, 40.0], [0, -1.1, 0, 30.0], [0, 0, 3.0, -12.0], [0, 0, 0, 1.0]])
    array = gaussian_filter(_head(64), (1.5, 1.5, 0))  # edges as soft as a scan's: little ringing
    out, out_affine = resample_in_plane(array, affine, pixel_mm)
    expected = (round(64 * 0.9 / pixel_mm), round(64 * 1.1 / pixel_mm), 2)
    assert out.shape == expected and out.dtype == np.float32 and out.min() >= 0
    np.testing.assert_allclose(_edges(out_affine, out.shape), _edges(affine, array.shape), atol=1e-9)
    np.testing.assert_allclose(out_affine[:3, 2], affine[:3, 2])  # slices untouched
    for axis in (0, 1):
        assert float(np.linalg.norm(out_affine[:3, axis])) == pytest.approx(pixel_mm, rel=0.02)
    # Fourier resampling keeps the mean signal over the field of view (k-space DC); the magnitude
    # folds the little ringing below zero up, so the mean can only grow, and slightly
    assert float(out.mean()) == pytest.approx(float(array.mean()), rel=0.02)


def test_resampling_to_the_same_pixel_is_the_identity():
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    array = _head(32)
    out, out_affine = resample_in_plane(array, affine, 1.0)
    np.testing.assert_allclose(out, array, atol=1e-4)
    np.testing.assert_allclose(out_affine, affine)


def test_pixel_range_never_upsamples_more_than_allowed():
    low, high = MRI_AUGMENT["pixel_mm"]
    assert pixel_range(0.3) == (low, high)  # a fine scan gets the whole range
    assert pixel_range(1.0) == pytest.approx((1.0 / MRI_AUGMENT["max_upsampling"], high))
    assert pixel_range(2.0) == (high, high)  # coarser than the range: its top only


def test_augmented_copies_cover_the_pixel_range_in_bins_and_vary():
    affine = np.diag([0.5, 0.5, 3.0, 1.0])  # fine enough for the whole range
    array = _head(96)
    low, high = MRI_AUGMENT["pixel_mm"]
    edges = np.exp(np.linspace(np.log(low), np.log(high), 5))
    rng = np.random.default_rng(0)
    draws = [mri_augment(array, affine, rng, pixel_bin=(b, 4)) for b in range(4)]
    for b, (out, out_affine, params) in enumerate(draws):
        # the matrix is rounded: the pixel lies in its bin up to half a pixel over the field of view
        assert edges[b] * 0.98 <= params["pixel_mm"] <= edges[b + 1] * 1.02
        assert params["pixel_mm"] == pytest.approx(float(np.linalg.norm(out_affine[:3, 0])))
        assert 0.0 <= params["rotation_deg"] < 360.0 and len(params["flips"]) == 2
        assert MRI_AUGMENT["gamma"][0] <= params["gamma"] <= MRI_AUGMENT["gamma"][1]
        assert out.min() >= 0 and out.shape[2] == 2
    assert len({round(d[2]["rotation_deg"], 3) for d in draws}) == 4


def test_mri_pair_differs_only_by_the_truncation_with_and_without_noise():
    signal = _head(64)
    quiet_hq, quiet_lq, quiet = mri_pair(signal, np.random.default_rng(1), p995_level=2500.0)
    assert quiet["noise_fraction"] == 0.0
    noisy_hq, noisy_lq, noisy = mri_pair(signal, np.random.default_rng(1), p995_level=2500.0, noise_fraction=0.03)
    for hq, lq in ((quiet_hq, quiet_lq), (noisy_hq, noisy_lq)):
        expected = np.clip(np.round(np.asarray(KSpaceTruncation(4)(hq[None]))[0]), 0, 4095)
        np.testing.assert_array_equal(lq, expected)
    air = signal == 0
    assert float(quiet_hq[air].max()) == 0.0
    # Rician floor in air: mean sigma * sqrt(pi / 2) with sigma = 3 % of the 2500 level
    assert float(noisy_hq[air].mean()) == pytest.approx(0.03 * 2500.0 * np.sqrt(np.pi / 2), rel=0.1)


def test_drawn_noise_spans_none_to_clinical():
    signal = _head(32)
    rng = np.random.default_rng(2)
    fractions = [mri_pair(signal, rng, noise_fraction=None)[2]["noise_fraction"] for _ in range(40)]
    low, high = MRI_AUGMENT["noise_fraction"]
    assert 0.0 in fractions and all(f == 0.0 or low <= f <= high for f in fractions)
    assert max(fractions) > 3 * min(f for f in fractions if f > 0)


def test_rician_noise_of_zero_sigma_is_the_magnitude_itself():
    image = _head(16)
    np.testing.assert_array_equal(rician_noise(image, 0.0, np.random.default_rng(3)), image)
