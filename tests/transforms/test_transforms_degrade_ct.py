"""Low-dose CT simulation: noise grows as the dose falls, mean kept, seeded, slice-wise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.transforms import LowDoseCT, LowDoseCTd

N = 64
SPACING = 5.0  # mm: the 52-pixel water disk is 26 cm across, a realistic attenuation path
FAST = {"num_views": 90, "pixel_spacing_mm": SPACING}


def _phantom():
    yy, xx = np.mgrid[:N, :N] - N / 2 + 0.5
    hu = np.full((N, N), -1000.0)
    disk = yy**2 + xx**2 <= 26**2
    hu[disk] = 0.0
    hu[(yy - 8) ** 2 + xx**2 <= 36] = 300.0  # a bone-like insert
    centre = yy**2 + xx**2 <= 12**2
    return hu, disk, centre


def _noise_std(dose, seed=0, **kw):
    hu, _, centre = _phantom()
    out = LowDoseCT(dose, seed=seed, **{**FAST, **kw})(hu[None])[0]
    return float((out - hu)[centre].std())


def test_noise_grows_as_the_dose_falls_like_one_over_sqrt_dose():
    stds = [np.mean([_noise_std(d, seed=s) for s in range(3)]) for d in (1.0, 0.25, 0.0625)]
    assert stds[0] < stds[1] < stds[2]
    # quantum noise dominates: variance ~ 1 / dose, so a 4x lower dose doubles the std
    assert stds[1] / stds[0] == pytest.approx(2.0, rel=0.25)
    assert stds[2] / stds[1] == pytest.approx(2.0, rel=0.25)


def test_mean_level_kept_within_one_hu():
    hu, disk, _ = _phantom()
    for seed in range(3):
        out = LowDoseCT(0.25, seed=seed, **FAST)(hu)
        assert abs(float((out - hu)[disk].mean())) < 1.0  # stated tolerance: 1 HU over the disk
        assert float((out - hu)[disk].std()) > 0.5  # and noise was really added


def test_thinner_slices_catch_fewer_photons_and_are_noisier():
    thin = np.mean([_noise_std(0.25, seed=s, slice_thickness_mm=1.0) for s in range(3)])
    thick = np.mean([_noise_std(0.25, seed=s, slice_thickness_mm=3.0) for s in range(3)])
    assert thin / thick == pytest.approx(np.sqrt(3.0), rel=0.2)  # a third of the photons per ray


def test_accounting_for_input_noise_adds_only_the_missing_variance():
    plain = np.mean([_noise_std(0.25, seed=s) for s in range(3)])
    extra = np.mean([_noise_std(0.25, seed=s, account_for_input_noise=True) for s in range(3)])
    # variance to add: 1/f - 1 = 3 instead of 1/f = 4 (in units of the full-dose variance)
    assert extra / plain == pytest.approx(np.sqrt(3 / 4), rel=0.1)
    hu, _, _ = _phantom()
    np.testing.assert_array_equal(LowDoseCT(1.0, account_for_input_noise=True, **FAST)(hu), hu)


def test_outside_the_scan_field_of_view_is_untouched():
    hu, _, _ = _phantom()
    out = LowDoseCT(0.1, seed=0, **FAST)(hu)
    # the scan field of view is the circle inscribed in the slice (scikit-image's circle=True)
    yy, xx = np.ogrid[:N, :N]
    inside = (yy - N // 2) ** 2 + (xx - N // 2) ** 2 <= (N // 2) ** 2
    assert (~inside).sum() > 4 * N  # the four corners: hundreds of pixels
    np.testing.assert_array_equal(out[~inside], hu[~inside])
    assert np.mean(out[inside] != hu[inside]) > 0.9  # while nearly every pixel inside got noise


def test_seeded_reproducible_and_seeds_differ():
    hu, _, _ = _phantom()
    a = LowDoseCT(0.25, seed=3, **FAST)(hu)
    b = LowDoseCT(0.25, seed=3, **FAST)(hu)
    c = LowDoseCT(0.25, seed=4, **FAST)(hu)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    t = LowDoseCT(0.25, **FAST)
    t.set_random_state(3)
    np.testing.assert_array_equal(t(hu), a)


def test_volume_slices_along_last_axis_get_independent_noise():
    hu, _, centre = _phantom()
    volume = np.repeat(hu[None, :, :, None], 2, axis=3).astype(np.float32)
    out = LowDoseCT(0.25, seed=0, **FAST)(volume)
    assert out.shape == volume.shape and out.dtype == np.float32
    noise = out - volume
    assert not np.allclose(noise[0, :, :, 0], noise[0, :, :, 1])
    assert noise[0, :, :, 0][centre].std() == pytest.approx(noise[0, :, :, 1][centre].std(), rel=0.4)


def test_metatensor_spacing_is_read_from_the_affine():
    hu, _, _ = _phantom()
    affine = torch.diag(torch.tensor([SPACING, SPACING, 3.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.from_numpy(hu[None].astype(np.float32)), affine=affine)
    out = LowDoseCT(0.25, seed=1, num_views=90)(image)
    ref = LowDoseCT(0.25, seed=1, **FAST)(hu[None].astype(np.float32))
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-3)


def test_dictionary_version_is_seeded_and_leaves_other_keys():
    hu, _, _ = _phantom()
    data = {"image": hu[None].copy(), "label": hu[None].copy()}
    a = LowDoseCTd(["image"], 0.25, seed=5, **FAST)(data)
    b = LowDoseCTd(["image"], 0.25, seed=5, **FAST)(data)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], hu[None])
    assert not np.array_equal(a["image"], hu[None])
    np.testing.assert_array_equal(data["image"], hu[None])  # input dict untouched


@pytest.mark.parametrize("kwargs", [{"dose_fraction": 0.0}, {"dose_fraction": 1.5}, {"num_views": 1}])
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        LowDoseCT(**kwargs)


def test_nan_input_is_a_user_error():
    hu, _, _ = _phantom()
    hu[3, 3] = np.nan
    with pytest.raises(UserInputError, match="NaN"):
        LowDoseCT(**FAST)(hu)


def _scan_at_fluence(fluence: float, seed: int) -> np.ndarray:
    """A 3-slice 'real scan' of the water phantom acquired at ``fluence`` (its own noise, no other)."""
    hu, _, _ = _phantom()
    return np.stack([LowDoseCT(1.0, incident_photons_per_mm2=fluence, seed=seed + k, **FAST)(hu[None])[0]
                     for k in range(3)], axis=-1)


@pytest.mark.parametrize("true_fluence", [2e5, 1.6e6])
def test_estimate_scan_fluence_recovers_the_fluence_a_scan_was_acquired_at(true_fluence):
    from monai_tat.transforms import estimate_scan_fluence

    scan = _scan_at_fluence(true_fluence, seed=3)
    estimate = estimate_scan_fluence(scan, SPACING, 3.0, num_views=FAST["num_views"], window=5)
    assert estimate == pytest.approx(true_fluence, rel=0.15)


def test_estimate_scan_fluence_needs_soft_tissue_and_a_volume():
    from monai_tat.transforms import estimate_scan_fluence

    air = np.full((N, N, 2), -1000.0)
    assert estimate_scan_fluence(air, SPACING, 3.0, num_views=FAST["num_views"]) is None
    with pytest.raises(UserInputError, match="HU image"):
        estimate_scan_fluence(np.zeros((2, 3, 4, 5)), SPACING, 3.0)
