"""MONAI transforms for CT, PET and MRI restoration: invertible intensity mappings to the [0, 1]
model range and physics-based degradation simulators.

Use alone in any MONAI pipeline; nothing here depends on the rest of monai_tat except its errors and
the task registry (:mod:`monai_tat.tasks`). The PET SUV factor from DICOM headers
(``suv_factor_from_dicom``) and DICOM rescaling (``rescale_to_physical``) are in :mod:`monai_tat.io`.
"""

from __future__ import annotations

from monai_tat.transforms.degrade_ct import LowDoseCT, LowDoseCTd, estimate_scan_fluence
from monai_tat.transforms.degrade_mri import KSpaceTruncation, KSpaceTruncationd
from monai_tat.transforms.degrade_pet import LowCountPET, LowCountPETd
from monai_tat.tasks import TASKS, check_task
from monai_tat.transforms.factory import model_intensity_transform
from monai_tat.transforms.intensity import (
    CT_WINDOWS,
    HUWindow,
    HUWindowd,
    MRINormalize,
    MRINormalized,
    SUVNormalize,
    SUVNormalized,
    window_bounds,
)
from monai_tat.transforms.simulators import simulator_for_task
from monai_tat.transforms.task_intensity import TaskIntensityd

__all__ = [
    "CT_WINDOWS",
    "HUWindow",
    "HUWindowd",
    "KSpaceTruncation",
    "KSpaceTruncationd",
    "LowCountPET",
    "LowCountPETd",
    "LowDoseCT",
    "LowDoseCTd",
    "MRINormalize",
    "MRINormalized",
    "SUVNormalize",
    "SUVNormalized",
    "TASKS",
    "TaskIntensityd",
    "check_task",
    "estimate_scan_fluence",
    "model_intensity_transform",
    "simulator_for_task",
    "window_bounds",
]
