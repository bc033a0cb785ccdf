"""DICOM series reading: series discovery, pixel values in physical units, modality and PET SUV.

SimpleITK (GDCM) sorts the slices by position and applies each file's own rescale slope and
intercept; the output pixel type is forced to float32 because PET series carry a different slope
per slice and an integer output type would silently truncate them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import SimpleITK as sitk

from monai_tat.errors import UserInputError
from monai_tat.tasks import get_task, task_for_modality

__all__ = ["is_dicom_file", "dicom_series_files", "read_dicom_header", "physical_units"]


def physical_units(modality: str | None) -> str | None:
    """Units of the pixel values read from a series of this DICOM Modality, when they are physical.

    CT: HU (after rescale); PET: SUV (after the SUV factor); MRI and unknown modalities: None
    (MRI signal has no physical unit).
    """
    task = task_for_modality(modality)
    return get_task(task).units if task is not None and get_task(task).fixed_range else None


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` is a file with the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def dicom_series_files(path: Path) -> list[str]:
    """File names of one DICOM series, sorted by slice position.

    Args:
        path: a folder holding exactly one series, or one file of a series (its whole series in the
            same folder is returned).

    Raises:
        UserInputError: no series, or a folder with several series.
    """
    reader = sitk.ImageSeriesReader
    folder = path if path.is_dir() else path.parent
    try:
        series_ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:
        # GDCM gives up on a whole folder when any file in it is malformed.
        if path.is_file():
            return [str(path)]  # the file the user named is still readable by itself
        raise UserInputError(f"cannot scan the DICOM files in {folder} ({str(err).strip().splitlines()[-1]})") from err
    if path.is_file():
        uid = str(read_dicom_header(path).get("SeriesInstanceUID", ""))
        if uid not in series_ids:
            # A lone file GDCM does not group (e.g. no position tags): read it by itself.
            return [str(path)]
        return list(reader.GetGDCMSeriesFileNames(str(folder), uid))
    if not series_ids:
        raise UserInputError(f"{path} holds no DICOM series; pass a NIfTI/NRRD/MHA file or a folder of DICOM files")
    if len(series_ids) > 1:
        raise UserInputError(
            f"{path} holds {len(series_ids)} DICOM series; pass one file of the series you want "
            "(its whole series is read) or a folder holding a single series"
        )
    return list(reader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))


def read_dicom_header(path: str | Path) -> Any:
    """The header of one DICOM file (pydicom Dataset, pixel data not loaded)."""
    import pydicom  # imported here: only DICOM input needs it

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # pydicom raises several unrelated types for broken files
        raise UserInputError(f"cannot read DICOM header of {path}: {err}") from err
