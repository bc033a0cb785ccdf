"""Read and write volumes with their geometry: NIfTI, NRRD, MHA and DICOM series in; NIfTI, NRRD, MHA out.

Images are returned as MONAI MetaTensors holding the spatial dimensions only (no channel), in
float32 physical units (CT: HU, PET DICOM: SUV), indexed ``[i, j(, k)]`` like MONAI's ITK reader,
with a 4x4 RAS ``affine``. Reading and writing go through SimpleITK for every format so that
geometry is handled by one library.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.io.atomic import atomic_write
from monai_tat.io.dicom import dicom_series_files, is_dicom_file, physical_units, read_dicom_header
from monai_tat.tasks import get_task, task_for_modality
from monai_tat.io.geometry import affine_from_itk, itk_from_affine, spacing_from_affine

__all__ = ["read_volume", "write_volume", "OUTPUT_SUFFIXES", "IMAGE_SUFFIXES", "image_suffix", "as_meta_tensor"]

OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
#: Image files (not DICOM) the package reads: what a folder of images is searched for.
IMAGE_SUFFIXES = OUTPUT_SUFFIXES + (".mhd", ".nhdr")
INPUT_SUFFIXES = IMAGE_SUFFIXES + (".dcm",)


def image_suffix(path: str | Path) -> str:
    """The image suffix of a path, treating ``.nii.gz`` as one suffix (lower case)."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def read_volume(path: str | Path, *, suv_overrides: dict[str, Any] | None = None) -> MetaTensor:
    """Read a 2D or 3D image into a MetaTensor of shape (I, J) or (I, J, K), float32.

    Args:
        path: a NIfTI / NRRD / MHA file (any format SimpleITK reads), a DICOM file (its whole series
            is read) or a folder holding one DICOM series.
        suv_overrides: keyword overrides for :func:`monai_tat.io.suv_factor_from_dicom`
            (e.g. patient weight) when a PET series lacks a tag.

    Returns:
        MetaTensor with meta ``affine`` (RAS, 4x4), ``spacing`` (mm per array axis),
        ``filename_or_obj``, ``modality`` ("CT", "PT", "MR" or None when unknown) and ``units``
        ("HU", "SUV" or None). A DICOM input also records ``dicom_files`` (its files, in the order
        of the last array axis) and ``suv_factor`` (what the rescaled values were multiplied by;
        1 except PET), which :func:`monai_tat.io.write_dicom_series` needs to write a derived series.

    Raises:
        UserInputError: missing, empty or unreadable file; 4D or multi-component image; no voxels.
    """
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"input not found: {p}")
    if p.is_file() and p.stat().st_size == 0:
        raise UserInputError(f"input {p} is an empty file (0 bytes)")
    dicom_files: list[str] | None = None
    if p.is_dir() or is_dicom_file(p):
        image, modality, factor, dicom_files = _read_dicom(p, suv_overrides)
    elif image_suffix(p) in (".nii", ".nii.gz"):
        image, modality, factor = None, None, 1.0
        array, affine = _read_nifti(p)
    else:
        image, modality, factor = _read_file(p), None, 1.0
    if image is not None:
        array = _array_from_itk(image)
        affine = affine_from_itk(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
    if factor != 1.0:
        array *= np.float32(factor)
    meta = {
        "filename_or_obj": str(p),
        "spacing": spacing_from_affine(affine, array.ndim),
        "modality": modality,
        "units": physical_units(modality),
        "original_channel_dim": "no_channel",
    }
    if dicom_files is not None:
        meta["dicom_files"] = dicom_files
        meta["suv_factor"] = float(factor)
    return MetaTensor(torch.from_numpy(array), affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


def _read_file(p: Path) -> sitk.Image:
    """Read one image file, refusing shapes the restoration cannot use before loading the pixels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise UserInputError(
            f"cannot read {p}: not a readable NIfTI / NRRD / MHA / DICOM image ({_first_line(err)})"
        ) from err
    size = reader.GetSize()
    _check_shape(p, size, reader.GetNumberOfComponents())
    _check_fits_in_memory(p, size, 2 * 4)  # the float32 image and its array copy
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise UserInputError(f"cannot read the pixels of {p} ({_first_line(err)})") from err
    if image.GetDimension() == 4:  # (x, y, z, 1): a 3D volume stored with a time axis of one
        image = sitk.Extract(image, list(size[:3]) + [0], [0, 0, 0, 0])
    return image


def _read_nifti(p: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read NIfTI with nibabel: ITK's NIfTI reader turns NaN voxels into 0, which would hide them."""
    import nibabel as nib

    try:
        nifti = nib.load(str(p))
        shape = tuple(int(s) for s in nifti.shape)
        dtype = nifti.get_data_dtype()
    except Exception as err:  # nibabel raises many types (ImageFileError, gzip / EOF / OS errors)
        raise UserInputError(f"cannot read {p}: not a readable NIfTI image ({type(err).__name__}: {err})") from err
    components = len(dtype.names) if dtype.names else (2 if dtype.kind == "c" else 1)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    _check_shape(p, shape, components)
    _check_nifti_data_size(p, nifti, shape, dtype)
    _check_fits_in_memory(p, shape, dtype.itemsize + 4)  # the stored values and their float32 copy
    try:
        array = np.asarray(nifti.get_fdata(dtype=np.float32)).reshape(shape)
    except Exception as err:
        raise UserInputError(f"cannot read the voxels of {p} ({type(err).__name__}: {err})") from err
    return np.ascontiguousarray(array, dtype=np.float32), np.asarray(nifti.affine, dtype=np.float64)


def _read_dicom(
    p: Path, suv_overrides: dict[str, Any] | None
) -> tuple[sitk.Image, str | None, float, list[str]]:
    """Read a DICOM series; return the image, its modality, the factor to physical units and its files."""
    files = dicom_series_files(p)
    header = read_dicom_header(files[0])
    modality = str(getattr(header, "Modality", "") or "").upper() or None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    # GDCM reads DICOM; without naming it, ITK first lets other readers probe the files (its JPEG
    # 2000 reader prints errors about tiles on plain DICOM slices such as pydicom's CT_small.dcm).
    reader.SetImageIO("GDCMImageIO")
    reader.SetOutputPixelType(sitk.sitkFloat32)  # per-slice rescale slopes must not be truncated
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise UserInputError(f"cannot read the DICOM series in {p} ({_first_line(err)})") from err
    _check_shape(p, image.GetSize(), image.GetNumberOfComponentsPerPixel())
    factor = 1.0
    task = task_for_modality(modality)
    if task is not None and get_task(task).dicom_conversion == "suv_factor":
        from monai_tat.io.suv import suv_factor_from_dicom  # pydicom-based; only PET needs it

        # All files: the scan reference time rule needs the earliest acquisition time of the series.
        factor = float(suv_factor_from_dicom(files, **(suv_overrides or {})))
    return image, modality, factor, list(files)


def _check_shape(p: Path, size: tuple[int, ...], components: int) -> None:
    """Refuse images that are not one 2D / 3D scalar image with voxels."""
    if components != 1:
        raise UserInputError(
            f"{p} has {components} values per voxel (colour or vector image); pass a scalar (grey-level) image"
        )
    dims = len(size)
    if dims == 4 and size[3] == 1:
        dims = 3
    if dims > 3:
        raise UserInputError(
            f"{p} is a {dims}D image of size {tuple(size)}; restoration takes one 2D or 3D image "
            "(extract a single volume from the time series first)"
        )
    if dims < 2:
        raise UserInputError(f"{p} is a {dims}D image; restoration takes a 2D or 3D image")
    if any(s == 0 for s in size):
        raise UserInputError(f"{p} is empty: its size {tuple(size)} has no voxels")


def _check_nifti_data_size(p: Path, nifti: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """An uncompressed NIfTI must hold the bytes its header claims (checked before allocating them)."""
    if image_suffix(p) != ".nii":
        return
    offset = int(getattr(nifti.dataobj, "offset", 0) or 0)
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    have = p.stat().st_size
    if have < need:
        raise UserInputError(
            f"{p} is truncated or its header is wrong: the header claims {'x'.join(map(str, shape))} voxels of "
            f"{dtype} ({_bytes_text(need)}) but the file holds {_bytes_text(have)}; export the image again"
        )


def available_memory_bytes() -> int | None:
    """Memory the process can still allocate (MemAvailable on Linux; free physical pages elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _check_fits_in_memory(p: Path, shape: tuple[int, ...], bytes_per_voxel: int) -> None:
    """Refuse a header whose voxel count would not fit in memory, before anything is allocated."""
    need = int(np.prod([int(s) for s in shape], dtype=np.int64)) * int(bytes_per_voxel)
    available = available_memory_bytes()
    if available is not None and need > available:
        raise UserInputError(
            f"{p} claims {'x'.join(str(int(s)) for s in shape)} voxels: reading it needs {_bytes_text(need)} of memory "
            f"but {_bytes_text(available)} is available; check that the file is the image you meant (a damaged "
            "header?) or crop it first"
        )


def _bytes_text(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _array_from_itk(image: sitk.Image) -> np.ndarray:
    """Pixel array in ``[i, j(, k)]`` order (ITK index order), float32 and contiguous."""
    array = sitk.GetArrayFromImage(image)  # (k, j, i)
    return np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1]), dtype=np.float32)


def as_meta_tensor(image: Any, affine: Any = None) -> MetaTensor:
    """Wrap an array / tensor (spatial dims only) in a MetaTensor; keep an existing MetaTensor's meta.

    ``affine`` (4x4 RAS) applies to plain arrays; the identity is used when it is missing.
    """
    if isinstance(image, MetaTensor):
        return image
    data = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image)
    aff = torch.eye(4, dtype=torch.float64) if affine is None else torch.as_tensor(np.asarray(affine), dtype=torch.float64)
    return MetaTensor(data, affine=aff, meta={"spacing": spacing_from_affine(aff.numpy(), data.ndim)})


def write_volume(image: Any, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a 2D / 3D image with its geometry, atomically (temporary file, then rename).

    Args:
        image: MetaTensor (spatial dims, or a leading channel of one) with a RAS affine, or an array
            (identity geometry). Written as float32.
        path: output file; the format follows the suffix: .nii.gz, .nii, .nrrd or .mha.
        overwrite: replace an existing file.

    Raises:
        UserInputError: unsupported suffix, existing file without ``overwrite``, missing or
            unwritable folder, or an image that is not 2D / 3D.
    """
    out = Path(path)
    suffix = image_suffix(out)
    if suffix not in OUTPUT_SUFFIXES:
        raise UserInputError(f"cannot write {out}: use one of the suffixes {', '.join(OUTPUT_SUFFIXES)}")
    meta_image = as_meta_tensor(image)
    array = meta_image.detach().cpu().numpy().astype(np.float32, copy=False)
    if array.ndim == 4 and array.shape[0] == 1:  # MONAI channel-first image
        array = array[0]
    if array.ndim not in (2, 3):
        raise UserInputError(f"cannot write {out}: image has shape {array.shape}, expected 2D or 3D")
    origin, spacing, direction = itk_from_affine(meta_image.affine.cpu().numpy(), array.ndim)
    itk_image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(tuple(range(array.ndim))[::-1])))
    itk_image.SetOrigin(origin)
    itk_image.SetSpacing(spacing)
    itk_image.SetDirection(direction)

    def _write(tmp: Path) -> None:
        # ITK's NIfTI and MetaImage writers print their errors (e.g. "wrote only N of M bytes") on the
        # process's stderr; the written file is checked anyway, and the error says what happened.
        with _native_stderr_captured():
            try:
                sitk.WriteImage(itk_image, str(tmp), useCompression=suffix != ".nii")
            except RuntimeError as err:
                raise UserInputError(f"cannot write {out} ({_first_line(err)})") from err

    return atomic_write(out, _write, overwrite=overwrite)


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Send what C / C++ code prints on file descriptor 2 to a discarded file while the block runs."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_line(err: Exception) -> str:
    """The most useful single line of an ITK exception (they span many lines)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Description:" in line or "ERROR" in line.upper():
            return line.split("Description:")[-1].strip()
    return lines[-1] if lines else type(err).__name__
