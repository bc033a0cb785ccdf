"""Write a restored volume back as a new DICOM series derived from the series it was read from.

The new series belongs to the same study and frame of reference as its source, so a PACS files it
beside the original: every slice is a copy of its source slice's header (patient, study, equipment,
geometry) with a new SeriesInstanceUID and SOPInstanceUID, ImageType ``DERIVED\\SECONDARY`` (PET:
``DERIVED\\PRIMARY``, the only value 2 its IOD allows), a
SeriesDescription and DerivationDescription naming the network, task and weights, and a
SourceImageSequence pointing at the source slice. Positions, orientation and spacing are the
source's, unchanged.

Pixel values are re-encoded as signed 16-bit integers with a per-slice RescaleSlope /
RescaleIntercept so that the rescaled values are the restored physical values:

- CT: HU, with the source slice's slope and intercept (a coarser slope only where the restored
  range does not fit 16 bits); the re-encoding error is at most half the slope (0.5 HU for slope 1).
- PET: back in the source's units (e.g. BQML: the SUV the network saw divided by the SUV factor
  used on input), intercept 0 and a per-slice slope, as scanners write PET; the error is at most
  half a slope step (1 / 65534 of the slice's largest absolute value).
- MRI and other modalities: the source's units, intercept 0, per-slice slope as for PET.

Private tags are removed (vendor data about the source pixels does not describe the new ones),
except for a PET in Units CNTS, whose Philips private factors define what the values mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from monai_tat.errors import UserInputError
from monai_tat.io.atomic_folder import atomic_write_folder
from monai_tat.io.volume import as_meta_tensor

__all__ = ["write_dicom_series", "derivation_text", "DicomEncoding"]

_INT16 = (-32768, 32767)
# Attributes of the source slice that describe its stored pixels (not the new ones): removed.
_SOURCE_PIXEL_KEYWORDS = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "SmallestImagePixelValue", "LargestImagePixelValue",
    "SmallestPixelValueInSeries", "LargestPixelValueInSeries", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "ModalityLUTSequence", "VOILUTSequence", "IconImageSequence", "PlanarConfiguration", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod", "PixelDataProviderURL", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
)
_SOURCE_IMAGE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")


@dataclass(frozen=True)
class DicomEncoding:
    """How one slice's physical values are stored: ``value = stored * slope + intercept``, int16."""

    slope: float
    intercept: float

    def encode(self, values: np.ndarray) -> np.ndarray:
        stored = np.round((np.asarray(values, dtype=np.float64) - self.intercept) / self.slope)
        return np.clip(stored, *_INT16).astype(np.int16)


def derivation_text(network: str, task: str, weights_sha256: str, *, units: str | None = None) -> str:
    """The DerivationDescription of a restored series (at most 1024 characters, the ST limit)."""
    from monai_tat import __version__
    from monai_tat.tasks import get_task

    spec = get_task(task)
    value_text = f" Values in {units}." if units else ""
    return (f"Restored by monai-tat {__version__}: network {network}, task {task} ({spec.title}), "
            f"weights sha256 {weights_sha256}.{value_text}")[:1024]


def write_dicom_series(
    image: Any,
    folder: str | Path,
    *,
    weights_sha256: str,
    network: str | None = None,
    task: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``image`` as a new DICOM series in ``folder`` (created atomically), derived from its source series.

    Args:
        image: MetaTensor of shape (I, J, K) or (I, J) in physical units (CT: HU, PET: SUV as read
            by :func:`~monai_tat.io.read_volume`), carrying the source series in
            ``meta["dicom_files"]`` (one file per index of the last axis) and ``meta["suv_factor"]``
            (set by :func:`~monai_tat.io.read_volume` for DICOM input and kept by the restoration).
        folder: the series folder to create (``IM00001.dcm`` ... inside); must not exist unless
            ``overwrite``.
        weights_sha256: hash of the network's weights, written in the DerivationDescription.
        network, task: named in the descriptions; default ``meta["restoration"]`` of a restored image.
        overwrite: replace an existing folder (the old one is removed only once the new one is verified).

    Returns:
        The folder. Every file was read back and checked (UIDs, geometry, pixel values) before the
        folder was renamed into place.

    Raises:
        UserInputError: the image was not read from DICOM (no patient or study data is invented),
            its shape does not match the source series, a source file is gone, or the source is a
            multi-frame image.
    """
    from pydicom.uid import generate_uid

    volume = as_meta_tensor(image)
    meta = dict(getattr(volume, "meta", {}) or {})
    sources = meta.get("dicom_files")
    if not sources:
        raise UserInputError(
            "a DICOM series can only be written for an image read from DICOM (the new series takes the patient, "
            "study and geometry of its source series, none is invented); read the DICOM series itself, or "
            "write NIfTI / NRRD / MHA instead"
        )
    record = meta.get("restoration") or {}
    network = network or record.get("network")
    task = task or record.get("task")
    if not network or not task:
        raise UserInputError("name the network and task of the restoration to describe the DICOM series")
    planes = _planes(volume, len(sources))
    headers = [_read_source(path) for path in sources]
    for header, plane in zip(headers, planes):
        if (int(header.Rows), int(header.Columns)) != plane.shape:
            raise UserInputError(
                f"the image slice of shape {plane.shape} does not match the source {header.filename} "
                f"({int(header.Rows)} x {int(header.Columns)}); write NIfTI / NRRD / MHA instead"
            )

    suv_factor = float(meta.get("suv_factor", 1.0) or 1.0)
    modality = str(headers[0].get("Modality", "") or "").upper()
    units = str(headers[0].get("Units", "") or "") if modality == "PT" else ("HU" if modality == "CT" else None)
    series_uid = generate_uid()
    description = _series_description(headers[0], network, task)
    derivation = derivation_text(network, task, weights_sha256, units=units or None)
    now = datetime.now()
    written: dict[str, tuple[Any, np.ndarray]] = {}
    datasets = []
    for index, (header, plane) in enumerate(zip(headers, planes)):
        values = plane.astype(np.float64) / suv_factor  # back in the source's units (PET: SUV -> source)
        encoding = _encoding(values, modality, header)
        stored = encoding.encode(values)
        ds = _derived_dataset(header, stored, encoding, series_uid, description, derivation, now, index)
        name = f"IM{index + 1:05d}.dcm"
        written[name] = (ds, stored)
        datasets.append((name, ds))

    def write(tmp: Path) -> None:
        for name, ds in datasets:
            ds.save_as(tmp / name, enforce_file_format=True)

    def verify(tmp: Path) -> None:
        _verify_series(tmp, written, headers, series_uid)

    return atomic_write_folder(folder, write, verify=verify, overwrite=overwrite)


def _planes(volume: Any, n_sources: int) -> list[np.ndarray]:
    """The (rows, columns) pixel planes of each source file: ``array[:, :, k].T``."""
    array = volume.detach().cpu().numpy() if hasattr(volume, "detach") else np.asarray(volume)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != n_sources:
        raise UserInputError(
            f"the image of shape {tuple(array.shape)} does not match its source series of {n_sources} DICOM files "
            "(one per slice of the last axis); write NIfTI / NRRD / MHA instead"
        )
    if not np.all(np.isfinite(array)):
        raise UserInputError("the image has NaN or infinite voxels, which DICOM integers cannot hold")
    return [np.ascontiguousarray(array[:, :, k].T) for k in range(n_sources)]


def _read_source(path: str | Path) -> Any:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as err:  # pydicom raises several unrelated types for broken or missing files
        raise UserInputError(
            f"cannot read the source DICOM file {path} again to write the derived series ({err}); keep the input "
            "series in place until the restored series is written"
        ) from err
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise UserInputError(
            f"{path} is a multi-frame DICOM image; a derived series is written for single-frame series only, "
            "write NIfTI / NRRD / MHA instead"
        )
    return ds


def _encoding(values: np.ndarray, modality: str, header: Any) -> DicomEncoding:
    """Slope and intercept for one slice: CT keeps the source's where the values fit 16 bits."""
    low, high = float(values.min()), float(values.max())
    if modality == "CT":
        slope = float(header.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
        if (low - intercept) / slope >= _INT16[0] and (high - intercept) / slope <= _INT16[1]:
            return DicomEncoding(slope, intercept)
        return DicomEncoding(_ds_slope(max(abs(low - intercept), abs(high - intercept)) / _INT16[1]), intercept)
    peak = max(abs(low), abs(high))
    return DicomEncoding(_ds_slope(peak / _INT16[1]) if peak > 0 else 1.0, 0.0)


def _ds_slope(slope: float) -> float:
    """``slope`` rounded up to what a DICOM decimal string holds, so that the largest value still fits."""
    text = f"{slope * (1.0 + 1e-9):.9g}"
    return float(text) if float(text) >= slope else float(f"{slope * (1.0 + 1e-8):.9g}")


def _series_description(header: Any, network: str, task: str) -> str:
    source = str(header.get("SeriesDescription", "") or "").strip()
    text = f"{network} {task} restored" + (f" {source}" if source else "")
    return text[:64]  # LO holds 64 characters


def _image_type(header: Any) -> list[str]:
    """``DERIVED\\SECONDARY`` plus the source's further values (CT needs value 3, e.g. AXIAL).

    The PET Image module allows only PRIMARY as value 2, so a PET series is ``DERIVED\\PRIMARY``.
    """
    source = [str(v) for v in (header.get("ImageType", None) or [])]
    modality = str(header.get("Modality", "")).upper()
    rest = source[2:] or (["AXIAL"] if modality == "CT" else [])
    return ["DERIVED", "PRIMARY" if modality == "PT" else "SECONDARY", *rest]


def _derived_dataset(
    header: Any, stored: np.ndarray, encoding: DicomEncoding, series_uid: str, description: str,
    derivation: str, now: datetime, index: int,
) -> Any:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.update(header)  # every public attribute of the source slice; then replace what changed
    for keyword in _SOURCE_PIXEL_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)
    keep_private = str(header.get("Modality", "")).upper() == "PT" and str(header.get("Units", "")).upper() == "CNTS"
    if not keep_private:
        ds.remove_private_tags()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = header.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    source_series_number = header.get("SeriesNumber", None)
    ds.SeriesNumber = (int(source_series_number) + 1000) % 2**31 if source_series_number not in (None, "") else 1000
    ds.SeriesDescription = description
    ds.DerivationDescription = derivation
    ds.ImageType = _image_type(header)
    ds.InstanceCreationDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = now.strftime("%H%M%S")
    if "InstanceNumber" not in ds:
        ds.InstanceNumber = index + 1
    reference = Dataset()
    reference.ReferencedSOPClassUID = header.SOPClassUID
    reference.ReferencedSOPInstanceUID = header.SOPInstanceUID
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_IMAGE_PURPOSE
    reference.PurposeOfReferenceCodeSequence = [purpose]
    ds.SourceImageSequence = [reference]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope = f"{encoding.slope:.10g}"
    ds.RescaleIntercept = f"{encoding.intercept:.10g}"
    ds.PixelData = stored.astype("<i2").tobytes()
    return ds


def _verify_series(
    folder: Path, written: dict[str, tuple[Any, np.ndarray]], headers: Sequence[Any], series_uid: str
) -> None:
    """Read every written file back and check it against what was meant to be written."""
    import pydicom

    source_uids = {str(h.SOPInstanceUID) for h in headers}
    seen: set[str] = set()
    names = sorted(p.name for p in folder.iterdir())
    if names != sorted(written):
        raise UserInputError(f"the DICOM series written in {folder} has files {names}, expected {sorted(written)}")
    for (name, (_, stored)), header in zip(sorted(written.items()), headers):
        try:
            ds = pydicom.dcmread(str(folder / name))
            pixels = ds.pixel_array
        except Exception as err:
            raise UserInputError(f"the DICOM file {name} just written cannot be read back ({err})") from err
        sop = str(ds.SOPInstanceUID)
        problems = []
        if sop in source_uids or sop in seen or sop != str(ds.file_meta.MediaStorageSOPInstanceUID):
            problems.append("SOPInstanceUID is not new and unique")
        if str(ds.SeriesInstanceUID) != series_uid:
            problems.append("SeriesInstanceUID differs")
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient", "ImageOrientationPatient",
                        "PixelSpacing"):
            if keyword in header and ds.get(keyword) != header.get(keyword):
                problems.append(f"{keyword} differs from the source")
        if pixels.shape != stored.shape or not np.array_equal(pixels, stored):
            problems.append("pixel values differ from those written")
        if problems:
            raise UserInputError(
                f"the DICOM file {name} read back is wrong: {'; '.join(problems)}; nothing was published"
            )
        seen.add(sop)
