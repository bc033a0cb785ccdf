"""``monai-tat restore`` and input units: a Bq/mL PET or a stored-value CT is refused in one line, or converted."""

from __future__ import annotations

import numpy as np
import pytest
from units_phantoms import PET_SUV_FACTOR, ct_hu, ct_stored, pet_bqml

from monai_tat.cli import main
from monai_tat.io import read_volume, write_volume

SHAPE = (16, 16, 2)


def _restore(*args: str) -> list[str]:
    return ["restore", *args, "--device", "cpu", "--quiet"]


def _one_error_line(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("monai-tat: error: "), err
    return err


@pytest.fixture
def pet_file(tmp_path):
    return write_volume(pet_bqml(SHAPE), tmp_path / "pet_bqml.nii.gz")


@pytest.fixture
def stored_ct_file(tmp_path):
    return write_volume(ct_stored(SHAPE), tmp_path / "ct_stored.nrrd")


def test_bqml_pet_is_refused_in_one_line_naming_the_units_and_the_option(tmp_path, pet_file, tat_checkpoint, capsys):
    out = tmp_path / "out.nii.gz"
    err = _one_error_line(capsys, main(_restore(str(pet_file), str(out), "--task", "pet", "--model", str(tat_checkpoint))))
    assert "Bq/mL" in err and "not in SUV" in err and "(option --suv-factor)" in err
    assert not out.exists()


def test_stored_value_ct_is_refused_in_one_line_naming_the_units_and_the_option(tmp_path, stored_ct_file,
                                                                                tat_checkpoint, capsys):
    out = tmp_path / "out.nii.gz"
    err = _one_error_line(capsys, main(_restore(str(stored_ct_file), str(out), "--task", "ct",
                                                "--model", str(tat_checkpoint))))
    assert "stored values" in err and "not in HU" in err and "(option --rescale-intercept)" in err
    assert not out.exists()


def test_bqml_pet_is_converted_by_its_suv_factor_or_acquisition_values(tmp_path, pet_file, tat_checkpoint, capsys):
    by_factor, by_values = tmp_path / "by_factor.nii.gz", tmp_path / "by_values.nii.gz"
    assert main(_restore(str(pet_file), str(by_factor), "--model", str(tat_checkpoint),
                         "--suv-factor", repr(PET_SUV_FACTOR))) == 0
    assert "(pet, TAT, cpu)" in capsys.readouterr().out  # the SUV factor made the task PET
    assert main(_restore(str(pet_file), str(by_values), "--model", str(tat_checkpoint),
                         "--patient-weight", "70", "--injected-dose", "370e6")) == 0
    source, first, second = (read_volume(p).numpy() for p in (pet_file, by_factor, by_values))
    np.testing.assert_allclose(first, second, rtol=1e-6)
    assert first.max() > 1000.0 and not np.array_equal(first, source)  # restored, given back in Bq/mL


def test_stored_value_ct_is_converted_by_its_rescale_intercept(tmp_path, stored_ct_file, tat_checkpoint, capsys):
    out, hu_file, hu_out = tmp_path / "out.nrrd", tmp_path / "ct_hu.nrrd", tmp_path / "hu_out.nrrd"
    assert main(_restore(str(stored_ct_file), str(out), "--model", str(tat_checkpoint),
                         "--rescale-intercept", "-1024")) == 0
    write_volume(read_volume(stored_ct_file).numpy() - 1024.0, hu_file)
    assert main(_restore(str(hu_file), str(hu_out), "--task", "ct", "--model", str(tat_checkpoint))) == 0
    restored, source = read_volume(out).numpy(), read_volume(stored_ct_file).numpy()
    assert restored.shape == source.shape and not np.array_equal(restored, source)
    # restored in HU and given back in stored values
    np.testing.assert_allclose(restored - 1024.0, read_volume(hu_out).numpy(), atol=0.05)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--rescale-intercept", "-1024"], "in HU already"),
        (["--suv-factor", "0.0002"], "converts PET images"),
        (["--injection-time", "yesterday"], "date and time"),
    ],
)
def test_a_conversion_a_hu_ct_does_not_need_is_refused(tmp_path, tat_checkpoint, capsys, extra, words):
    source = write_volume(ct_hu(SHAPE), tmp_path / "ct.nii.gz")
    out = tmp_path / "out.nii.gz"
    err = _one_error_line(capsys, main(_restore(str(source), str(out), "--task", "ct", "--model", str(tat_checkpoint),
                                                *extra)))
    assert words in err
    assert not out.exists()
