"""DICOM header parsing: SUV factor from synthetic PET DICOM headers in each vendor style, against hand-computed values.

Reference case: 75 kg, 370 MBq 18F (half-life 6586.2 s), injected 09:00:00, scan 10:00:00:
decayed dose = 370e6 * 2**(-3600/6586.2) = 370e6 * 0.684641 = 253.317e6 Bq, factor =
75000 g / 253.317e6 Bq = 2.96075e-4 g/Bq.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

from monai_tat.errors import UserInputError
from monai_tat.io import rescale_to_physical, suv_factor_from_dicom

FACTOR_1H = 2.960750161260463e-4  # decay 3600 s (see module docstring)
FACTOR_65MIN = 3.0557203993776267e-4  # decay 3900 s: 75000 / (370e6 * 2**(-3900/6586.2))
FACTOR_ADMIN = 2.027027027027027e-4  # no decay: 75000 / 370e6
FACTOR_1DAY = 1.802490041903761  # decay 86400 s: 75000 / (370e6 * 2**(-86400/6586.2))


def pet_header(**changes) -> Dataset:
    """A Siemens-like BQML PET header; ``changes`` set (or, with None, delete) top-level keywords."""
    ds = Dataset()
    ds.Modality = "PT"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.PatientWeight = "75"
    ds.Units = "BQML"
    ds.CorrectedImage = ["NORM", "DTIM", "ATTN", "SCAT", "DECY", "RAN"]
    ds.DecayCorrection = "START"
    ds.SeriesDate = "20240115"
    ds.SeriesTime = "100000"
    ds.AcquisitionDate = "20240115"
    ds.AcquisitionTime = "100000"
    radio = Dataset()
    radio.RadionuclideTotalDose = "370000000"
    radio.RadionuclideHalfLife = "6586.2"
    radio.RadiopharmaceuticalStartTime = "090000"
    radio.RadiopharmaceuticalStartDateTime = "20240115090000.00"
    ds.RadiopharmaceuticalInformationSequence = [radio]
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def radio(ds: Dataset) -> Dataset:
    return ds.RadiopharmaceuticalInformationSequence[0]


def test_siemens_like_start_decay():
    assert suv_factor_from_dicom(pet_header()) == pytest.approx(FACTOR_1H, rel=1e-9)


def test_start_time_with_series_date_when_no_start_datetime():
    ds = pet_header()
    del radio(ds).RadiopharmaceuticalStartDateTime
    assert suv_factor_from_dicom(ds) == pytest.approx(FACTOR_1H, rel=1e-9)


def test_ge_private_scan_time_used_for_post_processed_series():
    # series written at 12:00 after an acquisition that started at 10:05: the GE private scan
    # date-time (10:00) is the decay reference, not the earliest acquisition time
    ds = pet_header(SeriesTime="120000", AcquisitionTime="100500")
    block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
    block.add_new(0x0D, "DT", "20240115100000.00")
    assert ds[0x0009, 0x100D].value == "20240115100000.00"
    assert suv_factor_from_dicom(ds) == pytest.approx(FACTOR_1H, rel=1e-9)


def test_earliest_acquisition_time_without_ge_private_tag():
    # post-processed series (series 12:00) over three bed positions: earliest acquisition 10:05
    series = [pet_header(SeriesTime="120000", AcquisitionTime=t) for t in ("101500", "100500", "103000")]
    assert suv_factor_from_dicom(series) == pytest.approx(FACTOR_65MIN, rel=1e-9)


def test_series_time_kept_when_not_after_acquisition():
    series = [pet_header(AcquisitionTime=t) for t in ("100000", "101000")]
    assert suv_factor_from_dicom(series) == pytest.approx(FACTOR_1H, rel=1e-9)


def test_philips_cnts_private_suv_factor():
    ds = pet_header(Units="CNTS")
    block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(0x00, "DS", "0.000123")
    assert suv_factor_from_dicom(ds) == pytest.approx(0.000123, rel=1e-12)


def test_philips_cnts_activity_factor_times_bqml_factor():
    ds = pet_header(Units="CNTS")
    block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
    block.add_new(0x09, "DS", "0.5")  # Bq/mL per count
    assert suv_factor_from_dicom(ds) == pytest.approx(0.5 * FACTOR_1H, rel=1e-9)


def test_philips_cnts_without_private_factors_names_the_tag():
    with pytest.raises(UserInputError, match=r"7053,1000"):
        suv_factor_from_dicom(pet_header(Units="CNTS"))


def test_midnight_crossing_with_start_time_only():
    # injected 23:30 on the 15th, series on the 16th at 00:30: one hour of decay, not -23 h
    ds = pet_header(SeriesDate="20240116", SeriesTime="003000", AcquisitionDate="20240116", AcquisitionTime="003000")
    radio(ds).RadiopharmaceuticalStartTime = "233000"
    del radio(ds).RadiopharmaceuticalStartDateTime
    assert suv_factor_from_dicom(ds) == pytest.approx(FACTOR_1H, rel=1e-9)


def test_injection_and_scan_on_different_days_with_start_datetime():
    ds = pet_header()
    radio(ds).RadiopharmaceuticalStartDateTime = "20240114100000"
    assert suv_factor_from_dicom(ds) == pytest.approx(FACTOR_1DAY, rel=1e-9)


def test_admin_decay_correction_uses_no_decay():
    ds = pet_header(DecayCorrection="ADMIN")
    assert suv_factor_from_dicom(ds) == pytest.approx(FACTOR_ADMIN, rel=1e-12)
    # half-life and times play no part then: their absence is no error
    del radio(ds).RadionuclideHalfLife, radio(ds).RadiopharmaceuticalStartDateTime, ds.SeriesTime
    assert suv_factor_from_dicom(ds) == pytest.approx(FACTOR_ADMIN, rel=1e-12)


def test_gml_is_already_suv():
    assert suv_factor_from_dicom(pet_header(Units="GML")) == 1.0


@pytest.mark.parametrize(
    "changes, tag",
    [
        ({"PatientWeight": None}, "PatientWeight"),
        ({"PatientWeight": "0"}, "PatientWeight"),
        ({"Units": None}, "Units"),
        ({"Units": "PROPCPS"}, "Units"),
        ({"CorrectedImage": None}, "CorrectedImage"),
        ({"CorrectedImage": ["ATTN", "SCAT"]}, "DECY"),
        ({"DecayCorrection": "NONE"}, "DecayCorrection"),
        ({"SeriesTime": None}, "SeriesTime"),
        ({"RadiopharmaceuticalInformationSequence": None}, "RadiopharmaceuticalInformationSequence"),
    ],
)
def test_missing_or_inconsistent_tag_is_named(changes, tag):
    with pytest.raises(UserInputError, match=tag):
        suv_factor_from_dicom(pet_header(**changes))


@pytest.mark.parametrize("keyword", ["RadionuclideTotalDose", "RadionuclideHalfLife"])
def test_missing_radiopharmaceutical_tag_is_named(keyword):
    ds = pet_header()
    delattr(radio(ds), keyword)
    with pytest.raises(UserInputError, match=keyword):
        suv_factor_from_dicom(ds)


def test_missing_injection_time_is_named():
    ds = pet_header()
    del radio(ds).RadiopharmaceuticalStartDateTime
    del radio(ds).RadiopharmaceuticalStartTime
    with pytest.raises(UserInputError, match="RadiopharmaceuticalStartTime"):
        suv_factor_from_dicom(ds)


def test_injection_after_scan_is_an_error():
    ds = pet_header()
    radio(ds).RadiopharmaceuticalStartDateTime = "20240115110000"
    with pytest.raises(UserInputError, match="after the scan"):
        suv_factor_from_dicom(ds)


def test_dose_in_mbq_is_refused_with_the_fix():
    ds = pet_header()
    radio(ds).RadionuclideTotalDose = "370"
    with pytest.raises(UserInputError, match="injected_dose_bq"):
        suv_factor_from_dicom(ds)


def test_overrides_replace_missing_tags():
    ds = pet_header(PatientWeight=None, RadiopharmaceuticalInformationSequence=None)
    factor = suv_factor_from_dicom(
        ds,
        weight_kg=75.0,
        injected_dose_bq=370e6,
        half_life_s=6586.2,
        injection_time=datetime(2024, 1, 15, 9, 0, 0),
    )
    assert factor == pytest.approx(FACTOR_1H, rel=1e-9)
    # overriding the scan time changes the decay: 10:05 gives 3900 s
    assert suv_factor_from_dicom(pet_header(), scan_time=datetime(2024, 1, 15, 10, 5)) == pytest.approx(
        FACTOR_65MIN, rel=1e-9
    )
    assert suv_factor_from_dicom(pet_header(), weight_kg=37.5) == pytest.approx(FACTOR_1H / 2, rel=1e-9)


def _save(ds: Dataset, path) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = PositronEmissionTomographyImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_reads_a_file_and_a_series_folder(tmp_path):
    for i, acq in enumerate(("101500", "100500")):
        _save(pet_header(SeriesTime="120000", AcquisitionTime=acq), tmp_path / f"slice{i}.dcm")
    (tmp_path / "notes.txt").write_text("not DICOM")
    assert suv_factor_from_dicom(tmp_path / "slice0.dcm") == pytest.approx(
        75000 / (370e6 * 2 ** (-4500 / 6586.2)), rel=1e-9
    )
    assert suv_factor_from_dicom(tmp_path) == pytest.approx(FACTOR_65MIN, rel=1e-9)


def test_two_series_in_one_folder_are_refused(tmp_path):
    _save(pet_header(), tmp_path / "a.dcm")
    _save(pet_header(SeriesInstanceUID="1.2.3.5"), tmp_path / "b.dcm")
    with pytest.raises(UserInputError, match="SeriesInstanceUID"):
        suv_factor_from_dicom(tmp_path)


def test_rescale_to_physical_applies_slope_and_intercept():
    ds = Dataset()
    ds.RescaleSlope = "0.5"
    ds.RescaleIntercept = "-1024"
    stored = np.array([[0, 2048], [4096, 100]], dtype=np.int16)
    hu = rescale_to_physical(stored, ds)
    np.testing.assert_allclose(hu, [[-1024.0, 0.0], [1024.0, -974.0]])
    assert hu.dtype == np.float32 and stored[0, 1] == 2048
    np.testing.assert_array_equal(rescale_to_physical(stored, Dataset()), stored.astype(np.float32))
