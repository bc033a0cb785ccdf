"""Reading and writing images with geometry (NIfTI, NRRD, MHA, DICOM series; PET in SUV), DICOM header
parsing (rescale, SUV factor), derived DICOM series out, checkpoints, and the atomic writers.

Example::

    from monai_tat.io import read_volume, write_volume
    ct = read_volume("ct.nii.gz")          # MetaTensor (I, J, K) in HU, RAS affine in ct.affine
    write_volume(ct, "copy.mha")           # atomic, geometry kept
"""

from __future__ import annotations

from monai_tat.io.atomic import atomic_write, check_output_path, same_file
from monai_tat.io.atomic_folder import atomic_write_folder, check_output_folder
from monai_tat.io.checkpoint import read_checkpoint
from monai_tat.io.dicom_rescale import rescale_to_physical
from monai_tat.io.geometry import affine_from_itk, axial_axis, itk_from_affine
from monai_tat.io.suv import suv_factor_from_dicom
from monai_tat.io.volume import OUTPUT_SUFFIXES, as_meta_tensor, image_suffix, read_volume, write_volume
from monai_tat.io.dicom_write import write_dicom_series

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
