"""The tests' one DICOM series writer (pydicom): CT, PET or MR volumes in physical units, one file per slice.

``complete=False`` writes the few attributes a reader needs (geometry, rescale, UIDs): enough for
the readers' tests. ``complete=True`` adds the patient, study, equipment and (PET) radiopharmaceutical
attributes that make the series pass ``dciodvfy`` as it is, which the derived-series tests need
(a derived series copies its source's header). ``tests/`` is on ``sys.path`` through its ``conftest.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "PT": "1.2.840.10008.5.1.4.1.1.128", "MR": "1.2.840.10008.5.1.4.1.1.4"}


@dataclass(frozen=True)
class PetDose:
    """An F-18 injection one hour before the series start; images decay-corrected to the series start."""

    weight_kg: float = 75.0
    injected_bq: float = 350e6
    half_life_s: float = 6586.2
    delay_s: float = 3600.0  # injection 10:00, series start 11:00

    @property
    def suv_factor(self) -> float:
        """Bq/mL -> SUV: body weight in g over the activity left at the series start."""
        return self.weight_kg * 1000.0 / (self.injected_bq * 2.0 ** (-self.delay_s / self.half_life_s))


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    modality: str = "CT",
    intercept: Optional[float] = None,
    slopes: Optional[Sequence[float]] = None,
    pixel_spacing: tuple[float, float] = (0.7, 0.8),
    slice_spacing: float = 2.5,
    origin: tuple[float, float, float] = (-10.0, -20.0, 5.0),
    complete: bool = False,
    dose: Optional[PetDose] = PetDose(),
    extra: Optional[dict] = None,
    prefix: str = "slice",
) -> Path:
    """Write ``volume`` (slices, rows, columns; HU, Bq/mL or MR units) as one axial series in ``folder``.

    Stored values are ``round((value - intercept) / slope)`` as uint16 (int16 for a complete PET
    series). ``intercept`` defaults to -1024 for CT and 0 otherwise; ``slopes`` (one per slice)
    default to 1 for CT and MR and, for PET, to each slice's maximum over 30000. ``extra``
    attributes are set last (they may override anything); ``dose=None`` leaves out the PET dose
    attributes (units, weight, injection). Returns ``folder``.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    planes = np.asarray(volume, dtype=np.float64)
    intercept = (-1024.0 if modality == "CT" else 0.0) if intercept is None else float(intercept)
    if slopes is None:
        slopes = [max(float(np.abs(p).max()), 1.0) / 30000.0 if modality == "PT" else 1.0 for p in planes]
    signed = complete and modality == "PT"
    folder.mkdir(parents=True, exist_ok=True)
    study, frame, series = generate_uid(), generate_uid(), generate_uid()
    for k, plane in enumerate(planes):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SOP_CLASSES[modality], generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = modality, "Phantom^Test", "TAT0001"
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + slice_spacing * k]
        ds.PixelSpacing, ds.SliceThickness = list(pixel_spacing), slice_spacing
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slopes[k]:.8g}", intercept
        if modality == "PT" and dose is not None:
            _pet_dose(ds, dose)
        if complete:
            _complete(ds, modality, n_slices=len(planes), index=k)
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        stored = np.round((plane - intercept) / float(ds.RescaleSlope))
        dtype, (low, high) = ("<i2", (-32768, 32767)) if signed else ("<u2", (0, 65535))
        ds.PixelData = np.clip(stored, low, high).astype(dtype).tobytes()
        pydicom.dcmwrite(folder / f"{prefix}{k:03d}.dcm", ds, enforce_file_format=True)
    return folder


def read_series_values(folder: Path) -> np.ndarray:
    """The volume a DICOM reader gives for ``folder``: stored value x slope + intercept, by instance number."""
    import pydicom

    datasets = sorted((pydicom.dcmread(p) for p in Path(folder).glob("*.dcm")), key=lambda ds: int(ds.InstanceNumber))
    return np.stack([ds.pixel_array * np.float32(ds.RescaleSlope) + np.float32(ds.RescaleIntercept)
                     for ds in datasets]).astype(np.float32)


def _pet_dose(ds, dose: PetDose) -> None:
    from pydicom.dataset import Dataset

    ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["ATTN", "DECY"]
    ds.PatientWeight = dose.weight_kg
    ds.SeriesDate, ds.SeriesTime, ds.AcquisitionDate, ds.AcquisitionTime = "20240301", "110000", "20240301", "110000"
    radio = Dataset()
    start = 11 * 3600 - dose.delay_s
    clock = f"{int(start // 3600):02d}{int(start % 3600 // 60):02d}{int(start % 60):02d}"
    radio.RadiopharmaceuticalStartTime, radio.RadiopharmaceuticalStartDateTime = clock, f"20240301{clock}"
    radio.RadionuclideTotalDose, radio.RadionuclideHalfLife = dose.injected_bq, dose.half_life_s
    ds.RadiopharmaceuticalInformationSequence = [radio]


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _complete(ds, modality: str, *, n_slices: int, index: int) -> None:
    """The attributes beyond the readers' needs that ``dciodvfy`` asks of a CT or PET image."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240301", "101500", "1"
    ds.ReferringPhysicianName, ds.AccessionNumber, ds.StudyDescription = "", "A0001", "Phantom study"
    ds.SeriesNumber, ds.SeriesDescription = 3, f"{modality} phantom"
    ds.SeriesDate, ds.SeriesTime = "20240301", "110000"
    ds.Laterality = ""  # type 2: empty means unknown
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "monai-tat tests"
    ds.AcquisitionDate, ds.AcquisitionTime, ds.ContentDate, ds.ContentTime = "20240301", "110000", "20240301", "110500"
    ds.AcquisitionNumber = 1
    ds.SliceLocation = float(ds.ImagePositionPatient[2])
    if modality == "CT":
        ds.PatientPosition = "HFS"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP, ds.RescaleType = 120, "HU"
        return
    # PET states the position with PatientOrientationCodeSequence instead of PatientPosition.
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.CountsSource, ds.SeriesType = "EMISSION", ["STATIC", "IMAGE"]
    ds.CorrectedImage = ["ATTN", "DECY", "SCAT"]
    ds.RandomsCorrectionMethod, ds.AttenuationCorrectionMethod, ds.ReconstructionMethod = "DLYD", "CTAC", "OSEM"
    ds.CollimatorType, ds.NumberOfSlices = "NONE", n_slices
    ds.PatientOrientationCodeSequence = [_code("F-10450", "SRT", "recumbent")]
    ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = [_code("F-10340", "SRT", "supine")]
    ds.PatientGantryRelationshipCodeSequence = [_code("F-10470", "SRT", "headfirst")]
    radio = ds.RadiopharmaceuticalInformationSequence[0]
    radio.RadionuclideCodeSequence = [_code("C-111A1", "SRT", "^18^Fluorine")]
    radio.Radiopharmaceutical = "Fluorodeoxyglucose"
    ds.FrameReferenceTime, ds.ActualFrameDuration, ds.DecayFactor = 0, 180000, 1.0
    ds.ImageIndex = index + 1
