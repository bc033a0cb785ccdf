"""Complete CT and PET DICOM series written with pydicom: sources a DICOM validator accepts as they are.

A derived series copies its source's header, so the round-trip test needs sources that themselves
pass ``dciodvfy`` without errors (the bare series of ``conftest.write_dicom_series`` do not).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
PET_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.128"


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _common(ds, *, study: str, frame: str, series: str, modality: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "TAT0001", "19700101", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = study, "20240301", "101500", "1"
    ds.ReferringPhysicianName, ds.AccessionNumber, ds.StudyDescription = "", "A0001", "Phantom study"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series, 3, modality
    ds.SeriesDate, ds.SeriesTime, ds.SeriesDescription = "20240301", "110000", f"{modality} phantom"
    ds.Laterality = ""  # type 2: empty means unknown
    if modality == "CT":  # PET states the position with PatientOrientationCodeSequence instead
        ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
    ds.Manufacturer = "monai-tat tests"
    ds.AcquisitionDate, ds.AcquisitionTime, ds.ContentDate, ds.ContentTime = "20240301", "110000", "20240301", "110500"


def write_source_series(
    folder: Path,
    volume: np.ndarray,
    *,
    modality: str,
    pixel_spacing: tuple[float, float] = (0.9, 0.8),
    slice_spacing: float = 2.5,
    origin: tuple[float, float, float] = (-12.0, -20.0, 40.0),
    study: str | None = None,
    frame: str | None = None,
) -> Path:
    """Write ``volume`` (slices, rows, columns) as a complete axial CT (HU) or PET (Bq/mL) series.

    CT: uint16 stored values, slope 1, intercept -1024. PET: int16 with a per-slice slope, Units
    BQML, decay-corrected to the series start (SUV factor from weight 75 kg, dose 350 MBq F-18
    injected one hour before the scan).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    sop_class = {"CT": CT_SOP_CLASS, "PT": PET_SOP_CLASS}[modality]
    study, frame, series = study or generate_uid(), frame or generate_uid(), generate_uid()
    for k, plane in enumerate(np.asarray(volume, dtype=np.float64)):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        _common(ds, study=study, frame=frame, series=series, modality=modality)
        ds.InstanceNumber, ds.AcquisitionNumber = k + 1, 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + slice_spacing * k]
        ds.SliceLocation = origin[2] + slice_spacing * k
        ds.PixelSpacing, ds.SliceThickness = list(pixel_spacing), slice_spacing
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        if modality == "CT":
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.KVP, ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 120, -1024, 1, "HU"
            ds.PixelRepresentation = 0
            stored = np.clip(np.round(plane + 1024), 0, 65535).astype("<u2")
        else:
            _pet_attributes(ds, n_slices=len(volume), index=k)
            slope = max(float(np.abs(plane).max()), 1.0) / 32767
            ds.RescaleIntercept, ds.RescaleSlope = 0, f"{slope:.8g}"
            ds.PixelRepresentation = 1
            stored = np.clip(np.round(plane / float(ds.RescaleSlope)), -32768, 32767).astype("<i2")
        ds.PixelData = stored.tobytes()
        pydicom.dcmwrite(folder / f"src{k:03d}.dcm", ds, enforce_file_format=True)
    return folder


def _pet_attributes(ds, *, n_slices: int, index: int) -> None:
    from pydicom.dataset import Dataset

    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Units, ds.CountsSource, ds.SeriesType = "BQML", "EMISSION", ["STATIC", "IMAGE"]
    ds.CorrectedImage = ["ATTN", "DECY", "SCAT"]
    ds.DecayCorrection, ds.RandomsCorrectionMethod = "START", "DLYD"
    ds.AttenuationCorrectionMethod, ds.ReconstructionMethod = "CTAC", "OSEM"
    ds.CollimatorType, ds.NumberOfSlices = "NONE", n_slices
    ds.PatientWeight = 75
    ds.PatientOrientationCodeSequence = [_code("F-10450", "SRT", "recumbent")]
    ds.PatientOrientationCodeSequence[0].PatientOrientationModifierCodeSequence = [_code("F-10340", "SRT", "supine")]
    ds.PatientGantryRelationshipCodeSequence = [_code("F-10470", "SRT", "headfirst")]
    radio = Dataset()
    radio.RadiopharmaceuticalStartTime, radio.RadiopharmaceuticalStartDateTime = "100000", "20240301100000"
    radio.RadionuclideTotalDose, radio.RadionuclideHalfLife = 350e6, 6586.2
    radio.RadionuclideCodeSequence = [_code("C-111A1", "SRT", "^18^Fluorine")]
    radio.Radiopharmaceutical = "Fluorodeoxyglucose"
    ds.RadiopharmaceuticalInformationSequence = [radio]
    ds.FrameReferenceTime, ds.ActualFrameDuration, ds.DecayFactor = 0, 180000, 1.0
    ds.ImageIndex = index + 1
