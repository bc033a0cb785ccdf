"""Linear-filter reference points for denoising gains (synthetic volumes)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from denoising_bounds import denoising_bounds, main, oracle_wiener
from monai_tat.errors import UserInputError


def _pet_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64] - 31.5
    body = np.where(np.hypot(xx / 26, yy / 20) <= 1, 1.5, 0.0)
    body[np.hypot(xx - 8, yy) < 6] = 8.0  # a hot region
    reference = np.stack([ndimage.gaussian_filter(body, 1.5)] * 4, axis=-1)
    noise = ndimage.gaussian_filter(rng.normal(0, 0.6, reference.shape), (0.6, 0.6, 0))
    return reference + noise, reference


def test_filters_gain_on_noise_and_the_oracle_is_at_least_the_best_gaussian():
    low_quality, reference = _pet_pair()
    bounds = denoising_bounds(low_quality, reference, "pet")
    assert bounds.gaussian_db > bounds.input_db + 1.0
    assert bounds.wiener_db >= bounds.gaussian_db - 0.05
    assert bounds.gaussian_sigma_px in (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    restored = ndimage.gaussian_filter(low_quality, (bounds.gaussian_sigma_px,) * 2 + (0,))
    scored = denoising_bounds(low_quality, reference, "pet", restored=restored)
    assert scored.restored_db == pytest.approx(bounds.gaussian_db, abs=1e-9)


def test_oracle_leaves_a_noise_free_image_unchanged_and_keeps_slice_means():
    _, reference = _pet_pair()
    np.testing.assert_allclose(oracle_wiener(reference, reference), reference, atol=1e-9)
    low_quality, _ = _pet_pair(1)
    filtered = oracle_wiener(low_quality, reference)
    np.testing.assert_allclose(filtered.mean(axis=(0, 1)), low_quality.mean(axis=(0, 1)), atol=1e-9)


def test_wrong_inputs_are_refused():
    low_quality, reference = _pet_pair()
    with pytest.raises(UserInputError, match="denoising task"):
        denoising_bounds(low_quality, reference, "mri")
    with pytest.raises(UserInputError, match="same shape"):
        denoising_bounds(low_quality[:32], reference, "pet")


def test_command_prints_the_bounds(tmp_path, capsys):
    import nibabel as nib

    low_quality, reference = _pet_pair()
    paths = []
    for name, array in (("lq", low_quality), ("hq", reference)):
        paths.append(str(tmp_path / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(array.astype(np.float32), np.diag([-3.0, -3.0, 3.0, 1.0])), paths[-1])
    assert main([*paths, "--task", "pet", "--restored", paths[1].replace("hq", "lq")]) == 0
    printed = capsys.readouterr().out
    assert "oracle Wiener" in printed and "best Gaussian" in printed and "restored" in printed
