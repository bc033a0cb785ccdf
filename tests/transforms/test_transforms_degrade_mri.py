"""k-space truncation: the kept window, no energy outside it, same matrix, slice-wise volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.transforms import KSpaceTruncation, KSpaceTruncationd
from monai_tat.transforms.degrade_mri import kspace_window


def _window_mask(shape, factor):
    mask = np.zeros(shape, dtype=bool)
    mask[kspace_window(shape[0], factor), kspace_window(shape[1], factor)] = True
    return mask


def _centred_spectrum(image: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(image))


def test_factor_four_keeps_the_central_6_25_percent():
    mask = _window_mask((256, 256), 4)
    assert mask.sum() / mask.size == pytest.approx(0.0625)
    rows = kspace_window(256, 4)
    assert (rows.start, rows.stop) == (128 - 32, 128 + 32)  # frequencies -32..31 around DC


def test_no_energy_outside_the_kept_window_and_inside_unchanged():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((64, 48))  # zero-mean white noise: energy at every frequency
    out = KSpaceTruncation(4, magnitude=False)(image[None])[0]
    spectrum, original = _centred_spectrum(out), _centred_spectrum(image)
    mask = _window_mask(image.shape, 4)
    outside = np.sum(np.abs(spectrum[~mask]) ** 2)
    assert outside <= 1e-20 * np.sum(np.abs(original) ** 2)
    np.testing.assert_allclose(spectrum[mask], original[mask], rtol=1e-9, atol=1e-9)
    # the white-noise input had most of its energy outside: truncation really removed it
    assert np.sum(np.abs(original[~mask]) ** 2) > 0.5 * np.sum(np.abs(original[mask]) ** 2)


def test_magnitude_output_is_the_modulus_of_the_zero_filled_image():
    image = np.random.default_rng(1).random((1, 32, 32))
    complex_out = KSpaceTruncation(4, magnitude=False)(image)
    magnitude = KSpaceTruncation(4)(image)
    assert magnitude.shape == image.shape and magnitude.dtype == np.float64
    np.testing.assert_allclose(magnitude, np.abs(complex_out), rtol=1e-12)


def test_band_limited_positive_image_passes_unchanged():
    yy, xx = np.mgrid[:64, :64] / 64.0
    image = 10.0 + np.cos(2 * np.pi * 3 * xx) + np.sin(2 * np.pi * 5 * yy)  # frequencies inside -8..7
    out = KSpaceTruncation(4)(image)
    np.testing.assert_allclose(out, image, atol=1e-9)
    sharp = image.copy()
    sharp[20:40, 20:40] += 5.0  # an edge has high frequencies: it must be blurred
    assert np.abs(KSpaceTruncation(4)(sharp) - sharp).max() > 0.5


def test_volume_is_processed_slice_by_slice_along_the_last_axis():
    rng = np.random.default_rng(2)
    volume = rng.random((1, 24, 20, 3)).astype(np.float32)
    out = KSpaceTruncation(4)(volume)
    assert out.shape == volume.shape and out.dtype == np.float32
    for k in range(3):
        np.testing.assert_allclose(out[0, :, :, k], KSpaceTruncation(4)(volume[0, :, :, k]), rtol=1e-6)


def test_metatensor_and_dictionary_versions_keep_container_and_metadata():
    affine = torch.diag(torch.tensor([0.9, 0.9, 1.2, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.rand(1, 16, 16), affine=affine)
    out = KSpaceTruncationd(["image"], factor=2)({"image": image, "other": 3})
    assert isinstance(out["image"], MetaTensor) and torch.equal(out["image"].affine, affine)
    assert out["other"] == 3 and out["image"].dtype == torch.float32
    assert torch.equal(image, image.clone())  # input untouched
    np.testing.assert_allclose(KSpaceTruncation(1)(image.numpy()), image.numpy(), atol=1e-6)


def test_bad_inputs_are_user_errors():
    with pytest.raises(UserInputError, match="NaN"):
        KSpaceTruncation()(np.full((1, 8, 8), np.nan))
    with pytest.raises(UserInputError, match="shape"):
        KSpaceTruncation()(np.zeros(8))
    with pytest.raises(UserInputError):
        KSpaceTruncation(0.5)
