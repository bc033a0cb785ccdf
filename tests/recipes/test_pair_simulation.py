"""Pairs from high-quality images: the same chain for reference and degraded image, physical units."""

from __future__ import annotations

import numpy as np
import pytest

from pair_simulation import CLEAN_INPUT, PHANTOM_PIXEL_MM, clean_input_strength, ct_pair, mri_pair, pet_counts, pet_pair, phantom_pair, write_nifti
from monai_tat.io import read_volume
from monai_tat.transforms import KSpaceTruncation
from monai_tat.transforms.simulators import geometry_arguments


def _disc(n: int, inside: float, outside: float) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    return np.where(yy**2 + xx**2 <= (0.4 * n) ** 2, inside, outside)[:, :, None].repeat(2, axis=2)


def test_ct_pair_adds_only_the_missing_noise_and_stores_integer_hu():
    hu = _disc(64, 40.0, -1000.0)
    rng = np.random.default_rng(0)
    hq, lq, params = ct_pair(hu, 5.0, 3.0, rng, dose_fraction=0.25, fluence_scale=0.02)  # noisy enough to see
    np.testing.assert_array_equal(hq, hu)  # a real scan is its own reference
    assert np.array_equal(lq, np.round(lq)) and params["dose_fraction"] == 0.25
    inside = hu > 0
    assert abs(float(lq[inside].mean() - 40.0)) < 2.0 and float((lq - hq)[inside].std()) > 3.0
    phantom_hq, phantom_lq, p = ct_pair(hu, 5.0, 3.0, rng, noisy_input=False, fluence_scale=0.02)
    assert p["hq_noise_added"] and float((phantom_hq - hu)[inside].std()) > 1.0  # full-dose noise in the reference
    assert 0.15 <= p["dose_fraction"] <= 0.35


def test_pet_pair_keeps_the_mean_and_the_reference_has_full_dose_noise():
    suv = _disc(64, 2.0, 0.0)
    hq, lq, params = pet_pair(suv, (4.0, 4.0, 4.0), np.random.default_rng(1), dose_reduction_factor=12.0)
    inside = suv > 0
    noise_hq = float((hq - suv)[inside].std())
    noise_lq = float((lq - suv)[inside].std())
    assert noise_hq > 0 and noise_lq / noise_hq == pytest.approx(np.sqrt(12), rel=0.3)
    assert float(lq[inside].mean()) == pytest.approx(2.0, rel=0.03) and float(lq.min()) >= 0
    assert params["counts_per_suv_pixel"] == pytest.approx(200.0 * params["count_scale"])
    assert pet_counts((2.0, 2.0, 4.0), False) == pytest.approx(50.0)  # smaller voxels, fewer counts
    assert pet_counts((2.0, 2.0, 50.0), True) == pytest.approx(25.0)  # independent slices: cubic voxels
    # the count level is the package's rule, not a copy of it
    assert pet_counts((3.0, 2.5, 5.0), False) == geometry_arguments("pet", (3.0, 2.5), 5.0)["counts_per_suv_pixel"]


def test_clean_input_pairs_are_much_less_degraded_than_low_dose_ones():
    rng = np.random.default_rng(4)
    for _ in range(20):
        ct, phantom, pet = (clean_input_strength("ct", rng), clean_input_strength("ct", rng, phantom=True),
                            clean_input_strength("pet", rng))
        assert CLEAN_INPUT["ct_dose_fraction"][0] <= ct["dose_fraction"] <= CLEAN_INPUT["ct_dose_fraction"][1]
        assert set(ct) == {"dose_fraction"} and phantom["fluence_scale"] > 0  # real scans keep their own fluence
        assert CLEAN_INPUT["pet_dose_reduction_factor"][0] <= pet["dose_reduction_factor"] <= 6.0
        assert 1.0 <= pet["count_scale"] <= CLEAN_INPUT["pet_count_scale"][1]
    with pytest.raises(ValueError, match="not 'mri'"):
        clean_input_strength("mri", rng)
    # the same map: a clean-input pair's input is far closer to its reference than a low-dose pair's
    suv = _disc(64, 2.0, 0.0)
    low = pet_pair(suv, (4.0, 4.0, 4.0), np.random.default_rng(5), dose_reduction_factor=12.0, count_scale=1.0)
    clean = pet_pair(suv, (4.0, 4.0, 4.0), np.random.default_rng(5), **clean_input_strength("pet", np.random.default_rng(6)))
    assert float(np.std(clean[1] - clean[0])) < 0.5 * float(np.std(low[1] - low[0]))
    hu = _disc(64, 40.0, -1000.0)
    _, lq_low, _ = ct_pair(hu, 5.0, 3.0, np.random.default_rng(7), dose_fraction=0.25, fluence_scale=0.02)
    _, lq_clean, _ = ct_pair(hu, 5.0, 3.0, np.random.default_rng(7), dose_fraction=0.9, fluence_scale=0.02)
    inside = hu > 0
    assert float((lq_clean - hu)[inside].std()) < 0.5 * float((lq_low - hu)[inside].std())


def test_mri_pair_is_12_bit_integer_and_lq_is_the_truncated_reference():
    signal = _disc(64, 300.0, 10.0) + np.random.default_rng(2).random((64, 64, 2)) * 20
    hq, lq, params = mri_pair(signal, np.random.default_rng(3), p995_level=2500.0)
    assert float(np.percentile(hq, 99.5)) == pytest.approx(2500.0, rel=0.01)
    assert np.array_equal(hq, np.round(hq)) and np.array_equal(lq, np.round(lq))
    assert 0 <= float(lq.min()) and float(lq.max()) <= 4095
    expected = np.clip(np.round(np.asarray(KSpaceTruncation(4)(hq[None]))[0]), 0, 4095)
    np.testing.assert_array_equal(lq, expected)
    assert params["factor"] == 4.0


def test_nifti_keeps_geometry_values_and_integer_storage(tmp_path):
    affine = np.array([[-0.7, 0, 0, 10.0], [0, -0.7, 0, 20.0], [0, 0, 5.0, -30.0], [0, 0, 0, 1.0]])
    hu = np.round(np.random.default_rng(4).normal(0, 100, (8, 6, 3)))
    path = write_nifti(hu, affine, tmp_path / "ct.nii.gz", "int16")
    back = read_volume(path)
    np.testing.assert_allclose(back.numpy(), hu)
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-5)
    import nibabel as nib

    assert nib.load(str(path)).get_data_dtype() == np.int16


@pytest.mark.parametrize("task", ["ct", "pet", "mri"])
def test_phantom_pair_is_one_chain_with_drawn_geometry(task):
    hq, lq, affine, params = phantom_pair(task, 32, 2, np.random.default_rng(5))
    assert hq.shape == lq.shape == (32, 32, 2) and np.isfinite(lq).all()
    pixel = abs(float(affine[0, 0]))
    assert PHANTOM_PIXEL_MM[task][0] <= pixel <= PHANTOM_PIXEL_MM[task][1] and params["pixel_mm"] == pixel
    assert not np.array_equal(hq, lq)
    if task == "ct":
        assert params["hq_noise_added"] and np.array_equal(hq, np.round(hq))
    # the same generator state gives the same pair (the datalists are reproducible)
    again = phantom_pair(task, 32, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(again[1], lq)
