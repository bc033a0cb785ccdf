"""A small DICOM PET series (Bq/mL, per-slice rescale slopes) written with pydicom, and the volume
node Slicer's DICOM import makes of it: voxels in Bq/mL, instance UIDs and modality recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 70.0, 3.7e8, 6586.2
#: One hour between injection (09:00) and the series start (10:00), decay correction START.
SUV_FACTOR = WEIGHT_KG * 1000.0 / (DOSE_BQ * 2.0 ** (-3600.0 / HALF_LIFE_S))
SPACING = (2.0, 2.0, 3.0)  # column, row, slice spacing in mm


def write_pet_series(folder: Path, suv_kji: np.ndarray) -> tuple[list[Path], np.ndarray]:
    """Write ``suv_kji`` (slices, rows, columns; SUV) as a BQML PET series, one file per slice.

    Returns the files and the Bq/mL voxels a DICOM reader gives (stored value x each slice's slope).
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pet_storage = "1.2.840.10008.5.1.4.1.1.128"
    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    files, bqml = [], np.empty(suv_kji.shape, dtype=np.float32)
    for k, plane in enumerate(suv_kji / SUV_FACTOR):
        slope = float(plane.max()) / 30000.0 or 1.0
        stored = np.round(plane / slope).astype(np.uint16)
        bqml[k] = stored * np.float32(slope)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = pet_storage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = pet_storage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.Modality, ds.PatientName, ds.PatientID, ds.PatientWeight = "PT", "Phantom^PET", "0", WEIGHT_KG
        ds.Units, ds.DecayCorrection, ds.CorrectedImage = "BQML", "START", ["ATTN", "DECY"]
        ds.SeriesDate, ds.SeriesTime = "20240517", "100000"
        ds.AcquisitionDate, ds.AcquisitionTime = "20240517", "100000"
        radio = Dataset()
        radio.RadionuclideTotalDose, radio.RadionuclideHalfLife = DOSE_BQ, HALF_LIFE_S
        radio.RadiopharmaceuticalStartDateTime = "20240517090000"
        ds.RadiopharmaceuticalInformationSequence = [radio]
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing = [SPACING[1], SPACING[0]]
        ds.SliceThickness = SPACING[2]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, SPACING[2] * k]
        ds.InstanceNumber = k + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0.0
        ds.PixelData = stored.tobytes()
        path = folder / f"pet{k:03d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return files, bqml


def add_dicom_pet_node(scene, folder: Path, suv_kji: np.ndarray):
    """Write the series and add the node Slicer's DICOM import would make of it.

    Returns ``(node, {instance UID: file})``: the mapping stands in for Slicer's DICOM database.
    """
    import pydicom
    from MedicalRestoreLib import testing

    files, bqml = write_pet_series(folder, suv_kji)
    uids = [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in files]
    node = testing.add_volume(scene, "PET AC", bqml, spacing=SPACING, origin=(0.0, 0.0, 0.0),
                              directions=((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0)))  # LPS -> RAS
    node.SetAttribute("DICOM.instanceUIDs", " ".join(uids))
    node.SetAttribute("DICOM.Modality", "PT")
    return node, dict(zip(uids, map(str, files)))
