"""Which restoration task a volume needs: from its DICOM modality, else from its intensities.

:class:`ResolveTaskd` applies the same rules in MONAI pipelines (the bundles' ``inference.json``), so
a datalist item needs no ``task`` (a MONAI Deploy or Label app hands over ``{"image": ...}`` only).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_tat.errors import UserInputError
from monai_tat.inference.units import band_holds
from monai_tat.tasks import TASK_SPECS, TASKS, IntensitySignature, check_task, task_for_modality, task_for_units

__all__ = ["infer_task", "resolve_task", "ResolveTaskd", "dicom_modality_of"]

#: Where MONAI's image readers keep the DICOM Modality (0008,0060): ITK, pydicom, this package's reader.
_MODALITY_KEYS = ("modality", "0008|0060", "00080060")

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

    each task's :class:`~monai_tat.tasks.IntensitySignature` in the registry (CT: at least 1 % of
    the voxels below -500; PET: non-negative, not integer-valued, maximum 2 to 100; MRI:
    non-negative, integer-valued, maximum at least 100).

    Raises:
        UserInputError: another modality, or statistics fitting none of the rules (for example a
            PET in Bq/mL or an MRI scaled to [0, 1]); the message asks to choose the task.
    """
    meta = getattr(image, "meta", {}) or {}
    modality = dicom_modality_of(meta)
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


def dicom_modality_of(meta: Mapping[Hashable, Any]) -> str | None:
    """The DICOM Modality in an image's metadata, as this package's reader or MONAI's ITK / pydicom
    readers record it (``"modality"``, ``"0008|0060"``, ``"00080060"`` as text or a JSON-model
    ``{"Value": [...]}``); None when absent."""
    for key in _MODALITY_KEYS:
        value = meta.get(key)
        if isinstance(value, Mapping):
            value = (value.get("Value") or [None])[0]
        elif isinstance(value, (list, tuple)):
            value = value[0] if value else None
        text = str(value or "").strip().upper()
        if text:
            return text
    return None


class ResolveTaskd(MapTransform):
    """Give every item a ``task``: its own, the bundle's, or the one its image shows.

    Order: the item's ``task_key`` entry (checked against the registry); else ``task`` (a
    bundle-level setting, e.g. ``--task ct`` on ``python -m monai.bundle run``); else
    :func:`infer_task` on the image (its DICOM modality, its units, then its intensities). An item
    task that contradicts ``task`` is refused rather than silently overridden.

    Args:
        keys: the image key (one); the image must be loaded (``LoadImaged``) before.
        task_key: the item's task entry, written by this transform.
        task: the task of items without one, or None / "auto" to infer it from the image.
    """

    def __init__(self, keys: KeysCollection = "image", task_key: str = "task", task: str | None = None,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.task_key = task_key
        self.task = None if task is None or str(task).lower() == "auto" else check_task(task)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        given = d.get(self.task_key)
        if given is not None and str(given).strip():
            task = check_task(str(given))
            if self.task is not None and task != self.task:
                raise UserInputError(f"the item's task is {task} but the bundle's task setting is {self.task}; "
                                     "remove one of them", setting="task")
        elif self.task is not None:
            task = self.task
        else:
            key = next(iter(self.key_iterator(d)), None)
            if key is None:
                raise UserInputError(f"ResolveTaskd: the item has no image under {self.keys}", setting="task")
            image = d[key]
            meta = getattr(image, "meta", {}) or {}
            modality = dicom_modality_of(meta) or _modality_of_source(meta.get("filename_or_obj"))
            task = task_for_modality(modality) if modality else None
            task = task or infer_task(image)  # another modality is refused there, with its name
        d[self.task_key] = task
        return d


def _modality_of_source(source: Any) -> str | None:
    """The DICOM Modality of the file or series folder an image was read from (MONAI's readers
    drop most DICOM tags), or None when it is not DICOM."""
    from pathlib import Path

    from monai_tat.io.dicom import is_dicom_file, read_dicom_header

    if isinstance(source, (list, tuple)):
        source = source[0] if source else None
    if not source:
        return None
    path = Path(str(source))
    if path.is_dir():
        path = next((f for f in sorted(path.iterdir()) if f.is_file() and is_dicom_file(f)), None)
    if path is None or not path.is_file() or not is_dicom_file(path):
        return None
    return str(getattr(read_dicom_header(path), "Modality", "") or "").strip().upper() or None


def _task_from_statistics(image: Any) -> str:
    values = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    values = values.reshape(-1)
    if values.size > _MAX_SAMPLES:  # a regular subsample is plenty for these rules
        values = values[:: values.size // _MAX_SAMPLES + 1]
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        raise UserInputError(f"cannot tell the task of an image without finite values; {_ASK}", setting="task")
    vmin, vmax = float(values.min()), float(values.max())
    integer_valued = bool(np.all(np.abs(values - np.round(values)) < 1e-3))
    for spec in TASK_SPECS.values():
        if spec.signature is not None and _fits(spec.signature, values, vmin, vmax, integer_valued):
            return spec.name
    raise UserInputError(
        f"cannot tell whether this image is CT, PET or MRI from its values (range {vmin:.4g} to {vmax:.4g}, "
        f"no DICOM modality); {_ASK}",
        setting="task",
    )


def _fits(signature: IntensitySignature, values: np.ndarray, vmin: float, vmax: float, integer_valued: bool) -> bool:
    """Whether a sample of an image's finite values fits a task's intensity signature."""
    if signature.nonnegative and vmin < 0.0:
        return False
    if signature.integer_valued is not None and signature.integer_valued != integer_valued:
        return False
    low, high = signature.max_range
    if (low is not None and vmax < low) or (high is not None and vmax > high):
        return False
    return all(band_holds(values, band) for band in signature.bands)
