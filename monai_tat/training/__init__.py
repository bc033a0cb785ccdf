"""Training helpers used by the MONAI bundles: paired slice data, task-balanced sampling, EMA,
an iteration-based trainer, and whole-volume evaluation / restoration of a datalist.

Example::

    from monai_tat.training import PairedSliceDataset, TaskBalancedBatchSampler, create_ema, load_datalist
    data = PairedSliceDataset(load_datalist("data/datalist.json"), patch_size=(128, 128))
    sampler = TaskBalancedBatchSampler(data.tasks, samples_per_task=4)
"""

from __future__ import annotations

from monai_tat.training.checkpoint import save_state_dict
from monai_tat.training.data import PairedSliceDataset, load_datalist, normalize_pair, volume_slice_axis
from monai_tat.training.ema import create_ema, unwrap_model
from monai_tat.training.evaluation import DatalistEvaluator, output_path_for, restore_datalist
from monai_tat.training.sampler import RandomBatchSampler, TaskBalancedBatchSampler
from monai_tat.training.trainer import IterationTrainer

__all__ = [
    "DatalistEvaluator",
    "IterationTrainer",
    "PairedSliceDataset",
    "RandomBatchSampler",
    "TaskBalancedBatchSampler",
    "create_ema",
    "load_datalist",
    "normalize_pair",
    "output_path_for",
    "restore_datalist",
    "save_state_dict",
    "unwrap_model",
    "volume_slice_axis",
]
