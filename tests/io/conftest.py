"""Synthetic DICOM series written with pydicom (CT and PET, per-slice rescale slopes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def write_dicom_series(
    folder: Path,
    volume: np.ndarray,
    *,
    modality: str = "CT",
    slopes: list[float] | None = None,
    intercept: float = 0.0,
    pixel_spacing: tuple[float, float] = (0.7, 0.8),
    slice_spacing: float = 2.5,
    origin: tuple[float, float, float] = (-10.0, -20.0, 5.0),
    extra: dict | None = None,
) -> Path:
    """Write ``volume`` (slices, rows, columns) in physical units as one axial series, one file per slice.

    Stored values are ``round((value - intercept) / slope)`` as uint16 with each slice's slope.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class = {"CT": "1.2.840.10008.5.1.4.1.1.2", "PT": "1.2.840.10008.5.1.4.1.1.128", "MR": "1.2.840.10008.5.1.4.1.1.4"}[modality]
    folder.mkdir(parents=True, exist_ok=True)
    slopes = slopes or [1.0] * volume.shape[0]
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k, plane in enumerate(volume):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.Modality, ds.PatientName, ds.PatientID = modality, "Phantom", "0"
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing = list(pixel_spacing)
        ds.SliceThickness = slice_spacing
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + slice_spacing * k]
        ds.InstanceNumber = k + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slopes[k], intercept
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        stored = np.round((plane - intercept) / slopes[k])
        ds.PixelData = np.clip(stored, 0, 65535).astype(np.uint16).tobytes()
        pydicom.dcmwrite(folder / f"slice{k:03d}.dcm", ds, enforce_file_format=True)
    return folder


@pytest.fixture
def dicom_writer():
    """The :func:`write_dicom_series` helper."""
    return write_dicom_series
