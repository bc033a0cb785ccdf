"""MRI k-space consistency: detection of truncated inputs and the projection onto the measured band."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_standins import Identity
from scipy import ndimage

from monai_tat.demo.samples import make_sample
from monai_tat.errors import UserInputError
from monai_tat.inference import restore_volume
from monai_tat.inference.kspace_consistency import (
    MIN_EDGE_CONTRAST,
    detect_truncation_band,
    enforce_magnitude_consistency,
)
from monai_tat.transforms import KSpaceTruncation
from monai_tat.transforms.degrade_mri import kspace_window


@pytest.fixture(scope="module")
def mri_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """(reference, 4x truncated) phantom head slices, ``(N, H, W)``."""
    sample = make_sample("mri", size=96, slices=3, seed=7)
    return sample.reference.as_tensor().permute(2, 0, 1).contiguous(), sample.low_quality.as_tensor().permute(2, 0, 1).contiguous()


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).square().mean())


def test_truncated_input_is_detected_with_the_simulators_band(mri_pair):
    _, low = mri_pair
    band = detect_truncation_band(low, factor=4.0)
    assert band is not None
    assert band.rows == kspace_window(96, 4.0) == slice(36, 60)
    assert band.cols == slice(36, 60)
    assert band.edge_contrast >= MIN_EDGE_CONTRAST and band.outside_fraction < 0.02


@pytest.mark.parametrize("kind", ["reference", "blurred", "interpolated", "noise", "other_factor"])
def test_images_that_were_not_truncated_are_not_detected(mri_pair, kind):
    reference, low = mri_pair
    if kind == "reference":
        image = reference
    elif kind == "blurred":  # smooth, little energy outside the band, but no cliff at its edge
        image = torch.from_numpy(ndimage.gaussian_filter(reference.numpy(), (0, 2.5, 2.5)))
    elif kind == "interpolated":
        small = ndimage.zoom(reference.numpy(), (1, 0.25, 0.25), order=1)
        image = torch.from_numpy(ndimage.zoom(small, (1, 4, 4), order=1))
    elif kind == "noise":
        image = torch.from_numpy(np.random.default_rng(0).normal(100, 20, reference.shape).astype(np.float32))
    else:  # truncated at 2x: the 4x band's edge lies inside the measured band
        image = torch.from_numpy(np.asarray(KSpaceTruncation(2.0)(reference.permute(1, 2, 0)[None].numpy()))[0]).permute(2, 0, 1)
    assert detect_truncation_band(image, factor=4.0) is None
    forced = detect_truncation_band(image, factor=4.0, force=True)
    assert forced is not None and forced.rows == slice(36, 60)


def test_projection_restores_the_measured_band(mri_pair):
    """A restoration whose low frequencies are wrong (offset and gradient) gets them back from the input."""
    reference, low = mri_pair
    y = torch.linspace(-1, 1, reference.shape[1])[:, None]
    wrong_low_frequencies = reference + 40.0 + 60.0 * y
    band = detect_truncation_band(low)
    projected = enforce_magnitude_consistency(wrong_low_frequencies, low, band)
    assert projected.shape == reference.shape and projected.dtype == torch.float32
    assert _mse(projected, reference) < 0.1 * _mse(wrong_low_frequencies, reference)
    # and the projection's own low-resolution magnitude is the input's
    relow = torch.from_numpy(np.asarray(KSpaceTruncation(4.0)(projected.permute(1, 2, 0)[None].numpy()))[0]).permute(2, 0, 1)
    wrong_relow = torch.from_numpy(
        np.asarray(KSpaceTruncation(4.0)(wrong_low_frequencies.permute(1, 2, 0)[None].numpy()))[0]).permute(2, 0, 1)
    assert _mse(relow, low) < 0.05 * _mse(wrong_relow, low)
    assert float(projected.min()) >= 0.0


def test_projection_keeps_what_lies_outside_the_band(mri_pair):
    """The reference itself is (almost) consistent: the projection barely moves it."""
    reference, low = mri_pair
    band = detect_truncation_band(low)
    projected = enforce_magnitude_consistency(reference, low, band)
    assert _mse(projected, reference) < 0.05 * _mse(low, reference)


def test_engine_applies_it_to_truncated_mri_only_when_asked_or_detected(mri_pair):
    reference, low = mri_pair
    volume = low.permute(1, 2, 0).contiguous().numpy()
    truth = reference.permute(1, 2, 0).numpy()
    auto = restore_volume(volume, Identity(), "mri", device="cpu")
    record = auto.meta["restoration"]["kspace_consistency"]
    assert record["applied"] and record["band"]["rows"] == [36, 60]
    off = restore_volume(volume, Identity(), "mri", device="cpu", kspace_consistency="off")
    assert not off.meta["restoration"]["kspace_consistency"]["applied"]
    np.testing.assert_allclose(off.numpy(), volume, rtol=1e-5, atol=1e-3)
    # the identity "restoration" of a truncated image is its own input; the projection moves it
    # only by what the magnitude operation misplaced, never further from the truth
    assert _mse(torch.from_numpy(auto.numpy()), torch.from_numpy(truth)) <= _mse(torch.from_numpy(volume), torch.from_numpy(truth))
    untruncated = restore_volume(truth, Identity(), "mri", device="cpu")
    assert not untruncated.meta["restoration"]["kspace_consistency"]["applied"]
    forced = restore_volume(truth, Identity(), "mri", device="cpu", kspace_consistency="on")
    assert forced.meta["restoration"]["kspace_consistency"]["applied"]


def test_engine_consistency_settings_are_checked(mri_pair):
    _, low = mri_pair
    volume = low.permute(1, 2, 0).contiguous().numpy()
    with pytest.raises(UserInputError, match="MRI") as err:
        restore_volume(np.zeros((16, 16, 2), np.float32), Identity(), "ct", device="cpu", kspace_consistency="on")
    assert err.value.setting == "kspace_consistency"
    with pytest.raises(UserInputError, match="'auto', 'on' or 'off'"):
        restore_volume(volume, Identity(), "mri", device="cpu", kspace_consistency="sometimes")
    never_run = Identity()
    with pytest.raises(UserInputError, match="above 1"):
        restore_volume(volume, never_run, "mri", device="cpu", kspace_factor=1.0)
    assert never_run.max_seen == -float("inf")  # refused before the network ran
    ct = restore_volume(np.zeros((16, 16, 2), np.float32), Identity(), "ct", device="cpu")
    assert not ct.meta["restoration"]["kspace_consistency"]["applied"]
    shifted = restore_volume(volume - 500.0, Identity(), "mri", device="cpu")  # not a magnitude image
    assert "negative" in shifted.meta["restoration"]["kspace_consistency"]["reason"]
