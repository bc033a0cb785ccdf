"""Which restoration task a volume needs: from its DICOM modality, else from its intensities."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS, check_task, task_for_modality, task_for_units

__all__ = ["infer_task", "resolve_task"]

_ASK = "choose the task (ct, pet or mri) yourself"
_MAX_SAMPLES = 1_000_000


def resolve_task(task: str | None, image: Any) -> str:
    """``task`` checked and lower-cased, or inferred with :func:`infer_task` when None or "auto"."""
    if task is None or str(task).lower() == "auto":
        return infer_task(image)
    return check_task(task)


def infer_task(image: Any) -> str:
    """Guess "ct", "pet" or "mri" for an image in physical units.

    Order: the DICOM Modality in ``image.meta["modality"]`` (CT / PT / MR); the units in
    ``meta["units"]`` (HU, SUV); then intensity statistics:

    - CT: at least 1 % of voxels below -500 (air at about -1000 HU).
    - MRI: no negative values, integer-valued, maximum at least 100 (scanner signal units).
    - PET: no negative values, not integer-valued, maximum between 2 and 100 (SUV).

    Raises:
        UserInputError: another modality, or statistics fitting none of the rules (for example a
            PET in Bq/mL or an MRI scaled to [0, 1]); the message asks to choose the task.
    """
    meta = getattr(image, "meta", {}) or {}
    modality = meta.get("modality")
    if modality:
        task = task_for_modality(modality)
        if task is not None:
            return task
        raise UserInputError(
            f"the image is DICOM modality {modality}, not CT, PT or MR; restoration is for {', '.join(TASKS)}",
            setting="task",
        )
    task = task_for_units(meta.get("units"))
    return task if task is not None else _task_from_statistics(image)


def _task_from_statistics(image: Any) -> str:
    values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    values = values.reshape(-1)
    if values.size > _MAX_SAMPLES:  # a regular subsample is plenty for these rules
        values = values[:: values.size // _MAX_SAMPLES + 1]
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        raise UserInputError(f"cannot tell the task of an image without finite values; {_ASK}", setting="task")
    vmin, vmax = float(values.min()), float(values.max())
    if np.mean(values < -500.0) >= 0.01:
        return "ct"
    if vmin >= 0.0:
        integer_valued = bool(np.all(np.abs(values - np.round(values)) < 1e-3))
        if integer_valued and vmax >= 100.0:
            return "mri"
        if not integer_valued and 2.0 <= vmax <= 100.0:
            return "pet"
    raise UserInputError(
        f"cannot tell whether this image is CT, PET or MRI from its values (range {vmin:.4g} to {vmax:.4g}, "
        f"no DICOM modality); {_ASK}",
        setting="task",
    )
