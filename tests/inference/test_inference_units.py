"""Units are checked, not assumed: foreign units refused or converted, never silently passed through."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from units_phantoms import CT_RESCALE_INTERCEPT, PET_SUV_FACTOR, ct_hu, ct_stored, pet_bqml, pet_suv

from monai_tat.errors import UserInputError
from monai_tat.inference import restore_file, restore_volume
from monai_tat.io import read_volume, write_volume
from monai_tat.io.suv import suv_factor_from_values


class Shift(nn.Module):
    """Changes every model-range value: ``0.9 x + 0.05``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.9 * x + 0.05


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_pet_in_bqml_is_refused_with_what_was_found_and_the_fix(smoother) -> None:
    with pytest.raises(UserInputError) as err:
        restore_volume(pet_bqml(), smoother, "pet", device="cpu")
    text = _one_line(err)
    assert "not in SUV" in text and "Bq/mL" in text and "SUV factor" in text and "DICOM" in text
    assert err.value.setting == "suv_factor"
    assert smoother.calls == []  # refused before the network ran


def test_ct_in_stored_values_is_refused_with_what_was_found_and_the_fix(smoother) -> None:
    with pytest.raises(UserInputError) as err:
        restore_volume(ct_stored(), smoother, "ct", device="cpu")
    text = _one_line(err)
    assert "not in HU" in text and "stored values" in text and "rescale intercept" in text
    assert err.value.setting == "rescale_intercept"
    assert smoother.calls == []


def test_pet_in_bqml_with_its_suv_factor_is_restored_in_suv_and_given_back_in_bqml(smoother) -> None:
    in_suv = restore_volume(pet_suv(), smoother, "pet", device="cpu")
    # task automatic: a SUV factor means PET
    in_bqml = restore_volume(pet_bqml(), smoother, device="cpu", suv_factor=PET_SUV_FACTOR)
    assert in_bqml.meta["restoration"]["task"] == "pet"
    assert in_bqml.meta["restoration"]["units"] == {"image": "Bq/mL", "model": "SUV", "suv_factor": PET_SUV_FACTOR}
    assert in_bqml.meta["units"] == "Bq/mL"
    np.testing.assert_allclose(in_bqml.numpy() * PET_SUV_FACTOR, in_suv.numpy(), rtol=1e-4, atol=1e-4)
    assert not np.array_equal(in_bqml.numpy(), pet_bqml())


def test_ct_in_stored_values_with_its_intercept_is_restored_in_hu_and_given_back_in_stored_values(smoother) -> None:
    in_hu = restore_volume(ct_hu(), smoother, "ct", device="cpu")
    stored = restore_volume(ct_stored(), smoother, device="cpu", rescale_intercept=CT_RESCALE_INTERCEPT)
    assert stored.meta["restoration"]["task"] == "ct"
    assert stored.meta["restoration"]["units"]["image"] == "stored values"
    np.testing.assert_allclose(stored.numpy() + CT_RESCALE_INTERCEPT, in_hu.numpy(), atol=1e-3)
    assert in_hu.meta["restoration"]["units"] == {"image": "HU", "model": "HU"}


@pytest.mark.parametrize(
    ("make", "task", "options", "words"),
    [
        (pet_suv, "pet", {"suv_factor": PET_SUV_FACTOR}, ("an SUV factor was given", "Bq/mL", "leave the SUV factor out")),
        (ct_hu, "ct", {"rescale_intercept": -1024.0}, ("a rescale intercept was given", "in HU already")),
        (ct_hu, "ct", {"suv_factor": 1e-4}, ("converts PET images", "leave it out")),
        (pet_bqml, "pet", {"suv_factor": -2.0}, ("positive",)),
        (pet_bqml, "pet", {"suv_factor": float("nan")}, ("positive",)),
        (ct_stored, "ct", {"rescale_intercept": float("inf")}, ("finite",)),
        (ct_stored, None, {"suv_factor": 1e-4, "rescale_intercept": -1024.0}, ("different tasks",)),
    ],
)
def test_a_conversion_the_image_does_not_need_is_refused(smoother, make, task, options, words) -> None:
    with pytest.raises(UserInputError) as err:
        restore_volume(make(), smoother, task, device="cpu", **options)
    text = _one_line(err)
    for word in words:
        assert word in text, text
    assert smoother.calls == []


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (np.full((8, 8, 2), 30.0, np.float32), "pet"),  # all above the PET range, too few above 50 to be Bq/mL
        (np.full((8, 8, 2), 5000.0, np.float32), "ct"),  # all above the CT range
        (np.where(np.arange(128).reshape(8, 8, 2) % 2 == 0, -3000.0, 4000.0).astype(np.float32), "ct"),  # both sides
        (np.full((8, 8, 2), -5.0, np.float32), "pet"),
    ],
)
def test_an_image_without_a_voxel_in_the_model_range_is_refused(values, task) -> None:
    network = Shift()
    with pytest.raises(UserInputError) as err:
        restore_volume(values, network, task, device="cpu")
    text = _one_line(err)
    assert "no voxel" in text and "return the input unchanged" in text


@pytest.mark.parametrize(
    ("make", "task", "options"),
    [
        (ct_hu, "ct", {}), (ct_stored, "ct", {}), (ct_stored, "ct", {"rescale_intercept": -1024.0}),
        (pet_suv, "pet", {}), (pet_bqml, "pet", {}), (pet_bqml, None, {"suv_factor": PET_SUV_FACTOR}),
        (lambda: np.full((8, 8, 2), 30.0, np.float32), "pet", {}),
        (lambda: np.full((8, 8, 2), 5000.0, np.float32), "ct", {}),
        (lambda: np.full((8, 8, 2), 4.0, np.float32), "pet", {}),
        (lambda: np.random.default_rng(0).uniform(0, 4095, (8, 8, 2)).round().astype(np.float32), "mri", {}),
        (lambda: (pet_bqml() * 1e-3).astype(np.float32), "pet", {}),  # kBq/mL: nearly all of the body above 1
    ],
)
def test_the_restore_path_never_returns_its_input_unchanged_without_an_error(make, task, options) -> None:
    """Whatever the units: an error, or an output that differs from the input (the network changes every value)."""
    values = make()
    try:
        restored = restore_volume(values, Shift(), task, device="cpu", **options)
    except UserInputError as err:
        assert str(err) and "\n" not in str(err)
        return
    assert not np.array_equal(restored.numpy(), values)


def test_restore_file_takes_the_suv_factor_of_a_bqml_file_from_acquisition_values(tmp_path, smoother) -> None:
    source = write_volume(pet_bqml(), tmp_path / "pet_bqml.nii.gz")
    with pytest.raises(UserInputError) as err:
        restore_file(source, tmp_path / "refused.nii.gz", smoother, task="pet", device="cpu")
    assert "Bq/mL" in _one_line(err)
    assert not (tmp_path / "refused.nii.gz").exists()

    by_factor = restore_file(source, tmp_path / "by_factor.nii.gz", smoother, device="cpu",
                             suv_factor=PET_SUV_FACTOR)
    by_values = restore_file(source, tmp_path / "by_values.nii.gz", smoother, device="cpu",
                             suv_overrides={"weight_kg": 70.0, "injected_dose_bq": 370.0e6})
    assert by_factor.task == by_values.task == "pet"
    written = read_volume(tmp_path / "by_values.nii.gz").numpy()
    np.testing.assert_allclose(written, read_volume(tmp_path / "by_factor.nii.gz").numpy(), rtol=1e-6)
    assert written.max() > 1000.0  # given back in Bq/mL

    with pytest.raises(UserInputError, match="not both"):
        restore_file(source, tmp_path / "both.nii.gz", smoother, device="cpu", suv_factor=PET_SUV_FACTOR,
                     suv_overrides={"weight_kg": 70.0, "injected_dose_bq": 370.0e6})


def test_suv_factor_from_values_follows_the_dicom_rules() -> None:
    from datetime import datetime

    assert suv_factor_from_values(70.0, 370.0e6) == pytest.approx(PET_SUV_FACTOR)
    injected, scanned = datetime(2024, 5, 17, 9, 0), datetime(2024, 5, 17, 10, 49, 46, 200000)  # one half-life
    decayed = suv_factor_from_values(70.0, 370.0e6, half_life_s=6586.2, injection_time=injected, scan_time=scanned)
    assert decayed == pytest.approx(2 * PET_SUV_FACTOR)
    for kwargs, words in [
        ({"weight_kg": None, "injected_dose_bq": 370.0e6}, "patient weight"),
        ({"weight_kg": 70.0, "injected_dose_bq": 370.0e6, "injection_time": injected}, "both"),
        ({"weight_kg": 70.0, "injected_dose_bq": 370.0e6, "injection_time": injected, "scan_time": scanned}, "half-life"),
        ({"weight_kg": 70.0, "injected_dose_bq": 370.0}, "MBq"),
    ]:
        with pytest.raises(UserInputError, match=words):
            suv_factor_from_values(**kwargs)
