"""The pieces MONAI's ``SupervisedTrainer`` needs to train TAT and AMIR as the bundles do.

- :func:`load_datalist` (from :mod:`monai_tat.data`): one or several datalists of
  ``{"image", "label", "task"}`` items.
- :class:`TaskBalancedBatchSampler` / :class:`RandomBatchSampler`: endless batches, the same
  number of samples of every task (TAT) or random (AMIR).
- :class:`RestorationIteration`: the trainer's iteration, giving the objective the low-quality
  input and the tasks.
- :class:`WeightEMA`: exponential moving average of the weights (what is validated and saved);
  :func:`average_weights`: the (weighted, :func:`mixing_fractions`) mean of finished weights of one
  lineage.
- :class:`TeacherAnchoredLoss`: fine-tune some tasks while the others keep a finished network's
  answers as their targets.
- :func:`latest_checkpoint`: where an interrupted training run resumes.

The configs that put them together are the bundles' ``configs/train.json``.
"""

from __future__ import annotations

from monai_tat.data.datalist import load_datalist
from monai_tat.training.anchored import TeacherAnchoredLoss
from monai_tat.training.checkpoints import CHECKPOINT_PATTERN, latest_checkpoint
from monai_tat.training.ema import WeightEMA, average_weights, mixing_fractions
from monai_tat.training.iteration import RestorationIteration
from monai_tat.training.sampler import RandomBatchSampler, TaskBalancedBatchSampler

__all__ = [
    "CHECKPOINT_PATTERN",
    "RandomBatchSampler",
    "RestorationIteration",
    "TaskBalancedBatchSampler",
    "TeacherAnchoredLoss",
    "WeightEMA",
    "average_weights",
    "latest_checkpoint",
    "mixing_fractions",
    "load_datalist",
]
