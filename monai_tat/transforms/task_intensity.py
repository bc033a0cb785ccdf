"""One dictionary transform for mixed-task data: each item's intensities mapped by its own task.

A datalist mixes CT, PET and MRI items (``{"image", "label", "task"}``); MONAI pipelines apply one
transform to every item. :class:`TaskIntensityd` reads the item's ``task`` and applies that task's
mapping to the [0, 1] model range (:func:`monai_tat.transforms.model_intensity_transform`, the
functions of :mod:`monai_tat.transforms.model_mapping` that the restoration engine uses too),
records the bounds it used, and undoes them in :meth:`~TaskIntensityd.inverse`, so ``Invertd``
brings a network's output back to HU / SUV / MRI units.

The bundles' training pipelines use it (before cropping patches); their inference does not: the
``RestorationInferer`` takes physical units and its engine maps each slice itself.

Example (a training pipeline, and a pipeline of your own that runs a network on the mapped image)::

    train = Compose([LoadImaged(["image", "label"]), EnsureChannelFirstd(["image", "label"]),
                     Orientationd(["image", "label"], "RAS"),
                     TaskIntensityd(["image", "label"], ref_key="image", clip="fixed_range")])
    pre = Compose([LoadImaged("image"), EnsureChannelFirstd("image"), TaskIntensityd("image")])
    post = Invertd("pred", transform=pre, orig_keys="image")   # pred back in physical units
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Union

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import InvertibleTransform, MapTransform
from monai.utils import TraceKeys, TransformBackends, convert_to_tensor

from monai_tat.errors import UserInputError
from monai_tat.tasks import get_task
from monai_tat.transforms._checks import ensure_finite, float_dtype_for
from monai_tat.transforms.factory import model_intensity_transform
from monai_tat.transforms.model_mapping import ModelBounds, from_model, to_model

__all__ = ["TaskIntensityd", "CLIP_FIXED_RANGE"]

#: ``clip`` value that clips only the tasks with a fixed physical model range (CT, PET), as the
#: papers prepare training data; MRI's percentile scaling stays unclipped.
CLIP_FIXED_RANGE = "fixed_range"

ClipOption = Union[bool, str]


class TaskIntensityd(MapTransform, InvertibleTransform):
    """Map ``keys`` to the model range with the mapping of each item's task; invertible.

    For every item, ``model_intensity_transform(item[task_key])`` chooses the physical values
    mapped to 0 and 1 (CT [-1024, 3072] HU, PET [0, 20] SUV, MRI the 0.5 / 99.5 percentiles of
    each 2D slice along the axial axis, the axis the restoration engine slices; after
    ``Orientationd("RAS")`` the last one). With ``ref_key`` the bounds come from that key's image
    and are applied to every key: training maps the high-quality label with the low-quality
    input's percentiles, slice by slice, exactly what inference sees (only the input exists there).

    Args:
        keys: keys of the images to map (channel-first arrays in physical units, any spatial size).
        task_key: key of the item's task name ("ct", "pet", "mri").
        ref_key: key whose image sets the bounds for all ``keys`` (default: each key its own).
        clip: clip the output to [0, 1]: True, False (default: exactly invertible, what inference
            needs), or ``"fixed_range"`` to clip CT and PET only (the papers' training data).
        allow_missing_keys: skip missing keys instead of raising.

    Output: float32 MetaTensors (float64 stays float64); the bounds travel in each image's
    ``applied_operations`` so that :meth:`inverse` works on a copy of the record (``Invertd``).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        keys: KeysCollection,
        task_key: str = "task",
        ref_key: str | None = None,
        clip: ClipOption = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not (isinstance(clip, bool) or clip == CLIP_FIXED_RANGE):
            raise UserInputError(f"TaskIntensityd: clip must be True, False or '{CLIP_FIXED_RANGE}', got {clip!r}.")
        self.task_key, self.ref_key, self.clip = task_key, ref_key, clip

    def _clips(self, task: str) -> bool:
        return get_task(task).fixed_range if self.clip == CLIP_FIXED_RANGE else bool(self.clip)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.task_key not in d:
            raise UserInputError(
                f"TaskIntensityd: the item has no '{self.task_key}' entry; give every datalist item a task "
                "(ct, pet or mri)."
            )
        task = get_task(str(d[self.task_key])).name
        clip = self._clips(task)
        mapping = model_intensity_transform(task)
        shared = None
        if self.ref_key is not None:
            shared = mapping.bounds(self._checked(d[self.ref_key], self.ref_key))
        for key in self.key_iterator(d):
            image = self._checked(d[key], key)
            bounds = shared if shared is not None else mapping.bounds(image)
            if bounds.per_slice and image.shape[bounds.axis] != bounds.slices:
                raise UserInputError(
                    f"TaskIntensityd: image '{key}' has {image.shape[bounds.axis]} slices along axis {bounds.axis} but "
                    f"'{self.ref_key}' has {bounds.slices}; give the images of an item the same shape."
                )
            out = to_model(image, bounds)
            if clip:
                out = out.clamp(0.0, 1.0)
            info = {"task": task, **bounds.record(), "clip": clip}
            d[key] = self.push_transform(out, extra_info=info)
        return d

    @staticmethod
    def _checked(image: Any, key: Hashable) -> torch.Tensor:
        tensor = convert_to_tensor(image, track_meta=get_track_meta())
        if tensor.is_complex():
            raise UserInputError(f"TaskIntensityd: image '{key}' is complex; pass a magnitude (real) image.")
        ensure_finite(tensor, "TaskIntensityd", f"image '{key}'")
        return tensor.to(float_dtype_for(tensor.dtype))

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Map [0, 1] images back to physical units with the bounds recorded on each of them.

        A clipped mapping is not undone outside the window: clipped values return as its bounds.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if not isinstance(image, MetaTensor) or not image.applied_operations:
                raise UserInputError(
                    f"TaskIntensityd.inverse: '{key}' carries no record of the mapping; invert an image produced by "
                    "TaskIntensityd, or copy its applied_operations onto the network output (Invertd does)."
                )
            record = self.pop_transform(image, check=False)
            if record.get(TraceKeys.CLASS_NAME) != type(self).__name__:
                raise UserInputError(
                    f"TaskIntensityd.inverse: the last operation on '{key}' is {record.get(TraceKeys.CLASS_NAME)}; "
                    "invert the later transforms first."
                )
            info = record[TraceKeys.EXTRA_INFO]
            ensure_finite(image, "TaskIntensityd", f"image '{key}' to invert")
            d[key] = from_model(image.to(float_dtype_for(image.dtype)), ModelBounds.from_record(info))
        return d
