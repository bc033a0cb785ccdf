"""A small DICOM PET series (Bq/mL, per-slice rescale slopes) written with pydicom, and the volume
node Slicer's DICOM import makes of it: voxels in Bq/mL, instance UIDs and modality recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dicom_series import PetDose, read_series_values, write_series

#: 70 kg, 370 MBq F-18 injected one hour before the series start, decay correction START.
DOSE = PetDose(weight_kg=70.0, injected_bq=3.7e8)
SUV_FACTOR = DOSE.suv_factor
SPACING = (2.0, 2.0, 3.0)  # column, row, slice spacing in mm


def write_pet_series(folder: Path, suv_kji: np.ndarray) -> tuple[list[Path], np.ndarray]:
    """Write ``suv_kji`` (slices, rows, columns; SUV) as a BQML PET series, one file per slice.

    Returns the files and the Bq/mL voxels a DICOM reader gives (stored value x each slice's slope).
    """
    write_series(folder, suv_kji / SUV_FACTOR, modality="PT", pixel_spacing=(SPACING[1], SPACING[0]),
                 slice_spacing=SPACING[2], origin=(0.0, 0.0, 0.0), dose=DOSE, prefix="pet")
    return sorted(folder.glob("pet*.dcm")), read_series_values(folder)


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
