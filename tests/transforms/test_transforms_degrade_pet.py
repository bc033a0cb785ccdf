"""Low-count PET simulation: noise grows with the dose reduction, activity kept, OSEM correct."""

from __future__ import annotations

import numpy as np
import pytest

from monai_tat.errors import UserInputError
from monai_tat.transforms import LowCountPET, LowCountPETd

N = 64
FAST = {"num_views": 60, "subsets": 4, "iterations": 3}


def _phantom():
    yy, xx = np.mgrid[:N, :N] - N / 2 + 0.5
    suv = np.zeros((N, N))
    body = (yy / 20) ** 2 + (xx / 26) ** 2 <= 1
    suv[body] = 1.0
    suv[yy**2 + (xx - 10) ** 2 <= 25] = 4.0  # a hot lesion
    background = yy**2 + (xx + 8) ** 2 <= 36  # uniform region for noise
    return suv, body, background


def _cov(drf, seed=0, **kw):
    suv, _, background = _phantom()
    values = LowCountPET(drf, seed=seed, **{**FAST, **kw})(suv)[background]
    return float(values.std() / values.mean())


def test_noise_grows_with_the_dose_reduction_factor():
    covs = [_cov(r) for r in (1, 4, 12, 48)]
    assert covs == sorted(covs) and covs[-1] > 3 * covs[0]
    assert _cov(12, counts_per_suv_pixel=2000.0) < 0.6 * _cov(12)  # more counts, less noise


def test_total_activity_and_mean_level_are_kept():
    suv, body, background = _phantom()
    out = LowCountPET(12, seed=0, **FAST)(suv)
    assert float(out.sum()) == pytest.approx(float(suv.sum()), rel=0.03)  # stated: 3 % of the activity
    assert float(out[body].mean()) == pytest.approx(float(suv[body].mean()), rel=0.05)
    assert float(out[background].mean()) == pytest.approx(1.0, rel=0.1)
    assert float(out.min()) >= 0.0


def test_high_count_reconstruction_reproduces_the_input():
    suv, body, _ = _phantom()
    out = LowCountPET(1, counts_per_suv_pixel=1e6, seed=0, **FAST)(suv)
    assert np.corrcoef(out.ravel(), suv.ravel())[0, 1] > 0.95
    assert float(np.abs(out - suv)[body].mean()) < 0.15
    assert float(out[~body].mean()) < 0.05  # no activity invented in air


def test_resolution_model_and_postfilter_keep_activity():
    suv, _, background = _phantom()
    for kw in ({"psf_fwhm_pixels": 2.0}, {"postfilter_fwhm_pixels": 2.0}):
        out = LowCountPET(12, seed=0, **{**FAST, **kw})(suv)
        assert float(out.sum()) == pytest.approx(float(suv.sum()), rel=0.05)
    assert _cov(12, postfilter_fwhm_pixels=2.0) < 0.7 * _cov(12)


def test_seeded_volume_and_dictionary_versions():
    suv, _, _ = _phantom()
    volume = np.stack([suv, suv], axis=-1)[None].astype(np.float32)  # (1, H, W, 2)
    a = LowCountPET(12, seed=7, **FAST)(volume)
    b = LowCountPET(12, seed=7, **FAST)(volume)
    assert a.shape == volume.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[..., 0], a[..., 1])  # independent noise per slice
    d = LowCountPETd(["image"], 12, seed=7, **FAST)({"image": volume, "label": volume})
    np.testing.assert_array_equal(d["image"], a)
    assert d["label"] is volume


def test_non_square_slices_keep_their_corners():
    suv = np.ones((24, 48))
    out = LowCountPET(1, counts_per_suv_pixel=1e5, seed=0, **FAST)(suv)
    assert out.shape == suv.shape
    assert float(out[:3, :3].mean()) > 0.5  # corner activity reconstructed, not cut off


@pytest.mark.parametrize(
    "kwargs", [{"dose_reduction_factor": 0.5}, {"counts_per_suv_pixel": 0}, {"subsets": 0}, {"psf_fwhm_pixels": -1}]
)
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        LowCountPET(**kwargs)
