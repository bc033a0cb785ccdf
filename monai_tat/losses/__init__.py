"""Training objectives of TAT and AMIR.

- :class:`TaskAdaptiveLoss`: TAT's sample-level loss balancing (reference form, or the paper's eq. 5-6).
- :class:`TaskLevelUncertaintyLoss`: one learnable sigma per task (Kendall et al. 2018), TAT's ablation.
- :class:`AMIRLoss`: L1 + 0.001 x AMIR's routing balance loss (training mode only).

Every objective is called as ``loss(output, target, image=lq, task=tasks)`` and ignores what it
does not need, so a training loop can swap them freely.
"""

from __future__ import annotations

from monai_tat.losses.amir import AMIRLoss
from monai_tat.losses.task_adaptive import SigmaEstimator, TaskAdaptiveLoss
from monai_tat.losses.task_level import TaskLevelUncertaintyLoss

__all__ = ["AMIRLoss", "SigmaEstimator", "TaskAdaptiveLoss", "TaskLevelUncertaintyLoss"]
