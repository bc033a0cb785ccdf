"""The degradation simulator of each task, as the paired-data builder and pipelines use it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.transforms import Transform

from monai_tat.tasks import get_task

__all__ = ["simulator_for_task", "geometry_arguments"]

_REFERENCE_PET_VOXEL_MM3 = 64.0  # LowCountPET's default count level assumes 4 mm voxels


def _low_dose_ct_geometry(in_plane_mm: tuple[float, float], slice_mm: float | None) -> dict[str, float]:
    # The noise level of a CT slice depends on the pixel size and the slice thickness.
    thickness = {"slice_thickness_mm": slice_mm} if slice_mm is not None else {}
    return {"pixel_spacing_mm": in_plane_mm[0], **thickness}


def _low_count_pet_geometry(in_plane_mm: tuple[float, float], slice_mm: float | None) -> dict[str, float]:
    # Counts per voxel grow with the voxel volume (a 2D image counts as a cube of its first pixel size).
    voxel_mm3 = in_plane_mm[0] * in_plane_mm[1] * (slice_mm if slice_mm is not None else in_plane_mm[0])
    return {"counts_per_suv_pixel": 200.0 * voxel_mm3 / _REFERENCE_PET_VOXEL_MM3}


#: Per simulator class: the keyword arguments that follow from an image's voxel size.
_GEOMETRY_ARGUMENTS: dict[str, Callable[[tuple[float, float], float | None], dict[str, float]]] = {
    "LowDoseCT": _low_dose_ct_geometry,
    "LowCountPET": _low_count_pet_geometry,
}


def geometry_arguments(task: str, in_plane_mm: Sequence[float], slice_mm: float | None = None) -> dict[str, float]:
    """Simulator arguments of ``task`` that depend on the voxel size (in-plane spacings and slice, mm).

    CT: pixel spacing and slice thickness; PET: the count level scaled to the voxel volume; MRI:
    none (k-space truncation does not depend on the voxel size).
    """
    rule = _GEOMETRY_ARGUMENTS.get(get_task(task).simulator)
    pixel = (float(in_plane_mm[0]), float(in_plane_mm[-1]))
    return rule(pixel, None if slice_mm is None else float(slice_mm)) if rule else {}


def simulator_for_task(task: str, seed: int | None = None, **kwargs: Any) -> Transform:
    """The papers' degradation for ``task`` with its defaults, overridable by ``kwargs``.

    The class and its defaults come from the task registry (:mod:`monai_tat.tasks`): ``"ct"``
    :class:`LowDoseCT` (quarter dose), ``"pet"`` :class:`LowCountPET` (DRF 12), ``"mri"``
    :class:`KSpaceTruncation` (factor 4, deterministic: ``seed`` unused).
    """
    import monai_tat.transforms as transforms  # the simulator classes, looked up by name

    spec = get_task(task)
    simulator_class = getattr(transforms, spec.simulator)
    arguments = {**spec.simulator_defaults, **kwargs}
    if spec.simulator_is_random:
        arguments["seed"] = seed
    return simulator_class(**arguments)
