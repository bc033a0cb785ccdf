"""Whole-volume restoration: slicing, batching, devices, progress and cancellation; model loading.

Example::

    from monai_tat.inference import load_model, restore_volume
    net = load_model("checkpoints/tat.safetensors", device="cuda")
    restored = restore_volume("low_dose_ct.nii.gz", net, task="ct")   # MetaTensor in HU
"""

from __future__ import annotations

from monai_tat.inference.devices import resolve_device
from monai_tat.inference.engine import FIXED_RANGE_TASKS, RestorationCancelled, restore_volume
from monai_tat.inference.files import check_restore_paths, restore_file
from monai_tat.inference.inferer import RestorationInferer
from monai_tat.inference.models import DEMO_MODELS, demo_weights_path, load_model
from monai_tat.inference.task_detection import ResolveTaskd, infer_task, resolve_task

__all__ = [
    "DEMO_MODELS",
    "FIXED_RANGE_TASKS",
    "RestorationCancelled",
    "ResolveTaskd",
    "RestorationInferer",
    "check_restore_paths",
    "demo_weights_path",
    "infer_task",
    "load_model",
    "resolve_device",
    "resolve_task",
    "restore_file",
    "restore_volume",
]
