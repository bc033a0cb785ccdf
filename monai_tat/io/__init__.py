"""Reading and writing images with geometry (NIfTI, NRRD, MHA, DICOM series; PET in SUV), DICOM header
parsing (rescale, SUV factor), derived DICOM series out, checkpoints, and the atomic writers.

Example::

    from monai_tat.io import read_volume, write_volume
    ct = read_volume("ct.nii.gz")          # MetaTensor (I, J, K) in HU, RAS affine in ct.affine
    write_volume(ct, "copy.mha")           # atomic, geometry kept
"""

from __future__ import annotations

import importlib
from typing import Any

# Names load on first use, so that the path checks of ``monai_tat.io.atomic`` (run before any work)
# do not wait for SimpleITK and MONAI to import.
_EXPORTS = {
    "atomic_write": "atomic",
    "check_output_path": "atomic",
    "same_file": "atomic",
    "atomic_write_folder": "atomic_folder",
    "check_output_folder": "atomic_folder",
    "read_checkpoint": "checkpoint",
    "rescale_to_physical": "dicom_rescale",
    "affine_from_itk": "geometry",
    "axial_axis": "geometry",
    "itk_from_affine": "geometry",
    "suv_factor_from_dicom": "suv",
    "OUTPUT_SUFFIXES": "volume",
    "as_meta_tensor": "volume",
    "image_suffix": "volume",
    "read_volume": "volume",
    "write_volume": "volume",
    "write_dicom_series": "dicom_write",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "OUTPUT_SUFFIXES",
    "affine_from_itk",
    "as_meta_tensor",
    "atomic_write",
    "atomic_write_folder",
    "axial_axis",
    "check_output_folder",
    "check_output_path",
    "image_suffix",
    "itk_from_affine",
    "read_checkpoint",
    "read_volume",
    "rescale_to_physical",
    "same_file",
    "suv_factor_from_dicom",
    "write_dicom_series",
    "write_volume",
]
