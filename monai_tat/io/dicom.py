"""DICOM series reading: series discovery, pixel values in physical units, modality and PET SUV.

SimpleITK (GDCM) sorts the slices by position and applies each file's own rescale slope and
intercept; the output pixel type is forced to float32 because PET series carry a different slope
per slice and an integer output type would silently truncate them.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from monai_tat.errors import UserInputError
from monai_tat.tasks import get_task, task_for_modality

__all__ = ["is_dicom_file", "dicom_series_files", "read_dicom_header", "physical_units"]

logger = logging.getLogger(__name__)
#: Header elements read from every file beside a named one (pixels are never decoded).
_SERIES_TAGS = ["SeriesInstanceUID", "ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber"]


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
            same folder is returned: the files with its SeriesInstanceUID, found from their headers
            alone; other or broken files in the folder are ignored).

    Raises:
        UserInputError: no series, or a folder with several series.
    """
    if path.is_file():
        return _series_of_file(path)
    reader = sitk.ImageSeriesReader
    folder = path
    try:
        series_ids = reader.GetGDCMSeriesIDs(str(folder))
    except RuntimeError as err:
        # GDCM gives up on a whole folder when any file in it is malformed.
        raise UserInputError(f"cannot scan the DICOM files in {folder} ({str(err).strip().splitlines()[-1]})") from err
    if not series_ids:
        raise UserInputError(f"{path} holds no DICOM series; pass a NIfTI/NRRD/MHA file or a folder of DICOM files")
    if len(series_ids) > 1:
        raise UserInputError(
            f"{path} holds {len(series_ids)} DICOM series; pass one file of the series you want "
            "(its whole series is read) or a folder holding a single series"
        )
    return list(reader.GetGDCMSeriesFileNames(str(folder), series_ids[0]))


def _series_of_file(path: Path) -> list[str]:
    """The files of ``path``'s series in its folder, sorted along the slice normal (else by number)."""
    import pydicom

    try:
        named = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=_SERIES_TAGS)
    except Exception:  # the reader reports an unreadable file with its own message
        return [str(path)]
    uid = str(named.get("SeriesInstanceUID", "") or "")
    if not uid:
        return [str(path)]
    members, ignored = [(path, named)], 0
    with _quiet_pydicom():  # complaints about other files in the folder concern files the user did not name
        for entry in sorted(path.parent.iterdir()):
            if entry == path or not entry.is_file():
                continue
            if not is_dicom_file(entry):
                ignored += 1
                continue
            try:
                header = pydicom.dcmread(str(entry), stop_before_pixels=True, specific_tags=_SERIES_TAGS)
            except Exception:  # a broken file beside the series is not the user's input
                ignored += 1
                continue
            if str(header.get("SeriesInstanceUID", "") or "") == uid:
                members.append((entry, header))
            else:
                ignored += 1
    logger.info("%s: %d file(s) of its series read; %d other file(s) in %s ignored", path, len(members), ignored,
                path.parent)
    return [str(p) for p, _ in sorted(members, key=_slice_order_key(members))]


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    pydicom_logger = logging.getLogger("pydicom")
    level = pydicom_logger.level
    pydicom_logger.setLevel(logging.ERROR + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom_logger.setLevel(level)


def _slice_order_key(members: list[tuple[Path, Any]]) -> Any:
    """Sort key of a series' files: position along the slice normal when every file has one."""
    try:
        orientation = np.asarray(members[0][1].ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        positions = {p: float(np.dot(normal, np.asarray(h.ImagePositionPatient, dtype=np.float64)))
                     for p, h in members}
        return lambda member: (positions[member[0]], member[0].name)
    except (AttributeError, ValueError, TypeError, IndexError):
        return lambda member: (int(getattr(member[1], "InstanceNumber", 0) or 0), member[0].name)


def read_dicom_header(path: str | Path) -> Any:
    """The header of one DICOM file (pydicom Dataset, pixel data not loaded)."""
    import pydicom  # imported here: only DICOM input needs it

    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # pydicom raises several unrelated types for broken files
        raise UserInputError(f"cannot read DICOM header of {path}: {err}") from err
