"""Paired (LQ, HQ) training data: datalist loading and a 2D slice dataset with paired random crops."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, EnsureTyped, RandSpatialCropd, SpatialPadd

from monai_tat.errors import UserInputError
from monai_tat.inference.engine import FIXED_RANGE_TASKS, choose_slice_axis, volume_to_slices
from monai_tat.io import read_volume
from monai_tat.transforms import check_task, model_intensity_transform

__all__ = ["load_datalist", "normalize_pair", "volume_slice_axis", "PairedSliceDataset"]

logger = logging.getLogger(__name__)


def load_datalist(
    datalist: str | os.PathLike | Sequence[str | os.PathLike], key: str = "training",
    base_dir: str | os.PathLike | None = None, require_label: bool = True, required: bool = True,
) -> list[dict[str, Any]]:
    """Read the ``key`` list of decathlon-style datalists of ``{"image", "label", "task"}`` items.

    Several files (e.g. one per task, as ``monai_tat.data.build_paired_dataset`` writes them) are
    concatenated. Relative ``image`` / ``label`` paths are resolved against ``base_dir``, by default
    the folder of the datalist that lists them; ``task`` is checked against
    ``monai_tat.transforms.TASKS`` and lower-cased.

    Args:
        datalist: path of the JSON file, or a list of paths.
        key: ``"training"``, ``"validation"`` or ``"testing"``.
        base_dir: folder that relative paths start from (default: each datalist's folder).
        require_label: every item must have a ``label`` (HQ) entry (not needed for inference).
        required: raise if no file has ``key`` items; otherwise return ``[]``.

    Returns:
        list of dicts with absolute ``image`` (and ``label``) paths and a ``task``.
    """
    paths = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
    out: list[dict[str, Any]] = []
    for path in map(Path, paths):
        out += _read_datalist(path, key, base_dir, require_label)
    if not out and required:
        names = ", ".join(str(p) for p in paths)
        raise UserInputError(f"datalist {names} has no '{key}' items; add a '{key}' list of image/label/task entries.")
    return out


def _read_datalist(path: Path, key: str, base_dir: str | os.PathLike | None, require_label: bool) -> list[dict]:
    if not path.is_file():
        raise UserInputError(
            f"datalist not found: {path}; pass --dataset_dir (holding datalist.json) "
            "or --datalist /path/to/datalist.json."
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserInputError(f"datalist {path} is not valid JSON ({err}).") from err
    items = (content.get(key) if isinstance(content, dict) else None) or []
    root = Path(base_dir) if base_dir is not None else path.parent
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping) or "image" not in item or "task" not in item:
            raise UserInputError(f"datalist {path} '{key}' item {n} needs 'image' and 'task' entries, got {item!r}.")
        if require_label and "label" not in item:
            raise UserInputError(f"datalist {path} '{key}' item {n} needs a 'label' (high-quality image) entry.")
        entry = dict(item)
        entry["task"] = check_task(item["task"])
        for field in ("image", "label"):
            if field in entry:
                entry[field] = str((root / str(entry[field])).resolve())
        out.append(entry)
    return out


def normalize_pair(
    image: torch.Tensor, label: torch.Tensor, task: str, clip: bool | None = None
) -> tuple[MetaTensor, torch.Tensor]:
    """Map an LQ / HQ pair to the model range with the LQ image's mapping applied to both.

    The bounds come from ``model_intensity_transform(task)`` on the LQ image (fixed for CT and PET,
    percentiles of the LQ volume for MRI, exactly as at inference where only the LQ image exists),
    so the network learns to map one scale onto the same scale.

    Args:
        image: LQ volume in physical units (any shape).
        label: HQ volume of the same shape.
        task: "ct", "pet" or "mri".
        clip: clip both to [0, 1]. Default (None): as ``monai_tat.inference`` feeds the network,
            i.e. clipped for the fixed-range tasks CT and PET (the papers' preprocessing) and
            unclipped for MRI (percentile scaling).

    Returns:
        (normalised LQ MetaTensor with the transform recorded, normalised HQ tensor).
    """
    if tuple(image.shape) != tuple(label.shape):
        raise UserInputError(
            f"low- and high-quality images differ in shape: {tuple(image.shape)} vs {tuple(label.shape)}; "
            "pair images of the same grid."
        )
    if clip is None:
        clip = check_task(task) in FIXED_RANGE_TASKS
    transform = model_intensity_transform(task, clip=clip)
    lq = transform(image)
    info = lq.applied_operations[-1]["extra_info"]
    lower, upper = float(info["lower"]), float(info["upper"])
    hq = (torch.as_tensor(label).float() - lower) / (upper - lower)
    if clip:
        hq = hq.clamp(0.0, 1.0)
    return lq, hq


def volume_slice_axis(volume: torch.Tensor, axis: int | None = None) -> int | None:
    """The restoration engine's slicing axis: ``axis`` if given, else the axial axis (None for 2D)."""
    if not isinstance(volume, MetaTensor):
        volume = MetaTensor(volume)
    return choose_slice_axis(volume, axis)


class PairedSliceDataset(Dataset):
    """2D slices of paired volumes, each returned as the same random crop of LQ and HQ.

    Every volume pair is read once (``monai_tat.io.read_volume``), normalised with
    :func:`normalize_pair`, and split into (1, H, W) slices exactly as ``monai_tat.inference``
    slices a volume for the network (same axis, same in-plane orientation). Items are
    ``{"image": LQ, "label": HQ, "task": str}``;
    ``image``/``label`` are padded to at least ``patch_size`` and cropped to it at one random
    position shared by both (MONAI ``SpatialPadd`` + ``RandSpatialCropd``).

    Memory: all slices stay in RAM as float32 (8 bytes per voxel pair).

    Args:
        data: items from :func:`load_datalist` (``image``, ``label``, ``task``).
        patch_size: (H, W) of the crops (papers: 128 x 128); ``None`` returns whole slices.
        axis: slicing axis of 3D volumes; ``None``: the axial axis of each volume.
        clip: clip intensities to [0, 1]; None: as inference (see :func:`normalize_pair`).
        transform: optional extra dictionary transform applied after the crop (e.g. flips).
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        patch_size: Sequence[int] | None = (128, 128),
        axis: int | None = None,
        clip: bool | None = None,
        transform: Callable | None = None,
    ) -> None:
        slices: list[dict[str, Any]] = []
        for item in data:
            slices.extend(self._load_pair(item, axis, clip))
        if not slices:
            raise UserInputError("the paired dataset holds no slices; check the datalist entries.")
        keys = ("image", "label")
        steps: list[Callable] = []
        if patch_size is not None:
            steps += [SpatialPadd(keys, spatial_size=patch_size), RandSpatialCropd(keys, patch_size, random_size=False)]
        if transform is not None:
            steps.append(transform)
        # Plain tensors out: batches collate without per-slice metadata (none is needed in training).
        steps.append(EnsureTyped(keys, data_type="tensor", track_meta=False))
        super().__init__(slices, Compose(steps))
        logger.info("paired dataset: %d slices from %d volume pairs", len(slices), len(data))

    @staticmethod
    def _load_pair(item: Mapping[str, Any], axis: int | None, clip: bool | None) -> list[dict[str, Any]]:
        task = check_task(item["task"])
        lq_volume, hq_volume = read_volume(item["image"]), read_volume(item["label"])
        try:
            lq, hq = normalize_pair(lq_volume, hq_volume, task, clip=clip)
        except UserInputError as err:
            raise UserInputError(f"{item['image']} / {item['label']}: {err}") from err
        ax = volume_slice_axis(lq_volume, axis)
        # The engine's own slicing, so training sees slices exactly as restoration feeds them.
        lq_slices, hq_slices = volume_to_slices(lq.as_tensor(), ax), volume_to_slices(hq, ax)
        # clone(): each slice owns its memory, so the whole volume can be freed and a slice sent to
        # a worker process does not drag the volume's storage with it.
        return [
            {"image": a[None].clone(), "label": b[None].clone(), "task": task}
            for a, b in zip(lq_slices, hq_slices)
        ]

    @property
    def tasks(self) -> list[str]:
        """The task of every index (for :class:`~monai_tat.training.TaskBalancedBatchSampler`)."""
        return [d["task"] for d in self.data]
