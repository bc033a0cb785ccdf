"""Datasets for training and evaluation: the paired-data builder, patient-level splits, datalists.

Example::

    from monai_tat.data import build_paired_dataset
    datalist = build_paired_dataset(["a.nii.gz", "b.nii.gz"], "ct", "pairs/")
    # pairs/lq/*.nii.gz, pairs/hq/*.nii.gz, pairs/datalist.json (MONAI decathlon format)
"""

from __future__ import annotations

from monai_tat.data.datalist import load_datalist, write_datalist
from monai_tat.data.paired import PairedCase, build_paired_dataset
from monai_tat.data.prepare import crop_slices, select_slices
from monai_tat.data.split import SPLITS, split_patients

__all__ = [
    "PairedCase",
    "SPLITS",
    "build_paired_dataset",
    "crop_slices",
    "load_datalist",
    "select_slices",
    "split_patients",
    "write_datalist",
]
