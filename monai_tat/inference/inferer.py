"""A MONAI ``Inferer`` that restores whole volumes slice by slice through the package's engine.

MONAI workflows (``SupervisedEvaluator``, the bundles' ``inference.json`` / ``evaluate.json`` and
the validation during training) hand an inferer a batch of channel-first volumes and the network.
:class:`RestorationInferer` restores each volume with :func:`monai_tat.inference.restore_volume`,
the package's one restoration path (axial slicing, the task's intensity mapping, batching,
out-of-memory halving, clipping of the fixed-range tasks with out-of-range voxels kept), so a
bundle restores exactly as ``monai-tat restore`` and the Slicer module do.

Its input and output are in physical units (HU, SUV, MRI signal): the engine maps each slice to
the networks' [0, 1] range once and the result back once (:mod:`monai_tat.transforms.model_mapping`),
so the preprocessing has no intensity transform and the postprocessing no ``Invertd``.
``TaskIntensityd`` is the training pipelines' mapping (the same functions, applied before cropping
patches); an input that carries its record is refused, since restoring it would map it twice.

Example::

    inferer = RestorationInferer(batch_size=8)
    pred = inferer(batch["image"], network, task=batch["task"])   # (B, 1, I, J, K) in HU / SUV / MRI units
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import TraceKeys
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.engine import restore_volume
from monai_tat.inference.kspace_consistency import KSpaceConsistencyMode, check_kspace_consistency_mode
from monai_tat.tasks import get_task

__all__ = ["RestorationInferer"]

TaskArgument = Union[str, Sequence[str], None]


class RestorationInferer(Inferer):
    """Restore ``(B, 1, *spatial)`` images in physical units with a 2D network, slice by slice.

    Per batch item: the slicing axis is the axial axis of the item's affine (``axis`` overrides
    it; a 2D image is one slice); for the tasks with a fixed physical model range (CT, PET) the
    network sees its input clipped to [0, 1] and every voxel outside the range keeps its input
    value, as in :func:`monai_tat.inference.restore_volume`.

    Args:
        batch_size: slices per forward pass (default: the engine's choice for the device).
        axis: slicing axis of 3D volumes, or None for each volume's axial axis.
        amp: None (float32), "bf16" or "fp16" autocast on CUDA.
        self_ensemble: average the network over the 8 flips / transpositions of each slice.
        kspace_consistency: MRI k-space consistency, "auto" (when the input is detected as
            k-space-truncated), "on" or "off"; see :func:`monai_tat.inference.restore_volume`.

    Call: ``inferer(inputs, network, task=...)``: ``task`` is the batch's task names (one name, or
    one per item, e.g. passed by ``monai.engines.PrepareBatchExtraInput({"task": "task"})``), or
    None to let the engine find each item's task (DICOM modality, then intensities).

    Returns:
        a float32 MetaTensor shaped like ``inputs``, with its metadata, in physical units.
    """

    def __init__(self, batch_size: int | None = None, axis: int | None = None, amp: str | bool | None = None,
                 self_ensemble: bool = False, kspace_consistency: KSpaceConsistencyMode = "auto") -> None:
        super().__init__()
        if batch_size is not None and int(batch_size) < 1:
            raise UserInputError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size, self.axis, self.amp = batch_size, axis, amp
        self.self_ensemble = bool(self_ensemble)
        self.kspace_consistency = check_kspace_consistency_mode(kspace_consistency)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, task: TaskArgument = None,
                 **kwargs: Any) -> torch.Tensor:
        if inputs.ndim not in (4, 5) or inputs.shape[1] != 1:
            raise UserInputError(
                f"the restoration inferer takes (batch, 1, H, W) or (batch, 1, I, J, K) images, got {tuple(inputs.shape)}"
            )
        n = inputs.shape[0]
        names = [None] * n if task is None else ([task] * n if isinstance(task, str) else [str(t) for t in task])
        if len(names) != n:
            raise UserInputError(f"got {len(names)} task names for a batch of {n} images")
        device = _network_device(network, inputs.device)
        restored = [self._restore_item(inputs, b, names[b], network, device) for b in range(n)]
        out = torch.stack(restored)[:, None].to(inputs.device)
        if isinstance(inputs, MetaTensor):
            return MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
        return out

    def _restore_item(self, inputs: torch.Tensor, b: int, task: str | None, network: nn.Module,
                      device: torch.device) -> torch.Tensor:
        _refuse_mapped(inputs, b)
        item = inputs[b, 0]
        item = (item.as_tensor() if isinstance(item, MetaTensor) else item).detach().float().cpu()
        affine = None
        if isinstance(inputs, MetaTensor):
            affine = inputs.affine[b] if inputs.affine.ndim == 3 else inputs.affine
        restored = restore_volume(MetaTensor(item, affine=affine), network, None if task is None else get_task(task).name,
                                  device=device, batch_size=self.batch_size, axis=self.axis, amp=self.amp,
                                  self_ensemble=self.self_ensemble, kspace_consistency=self.kspace_consistency)
        return restored.as_tensor()


def _refuse_mapped(inputs: torch.Tensor, b: int) -> None:
    """Refuse batch item ``b`` when TaskIntensityd already mapped it: the engine maps it itself."""
    ops = inputs.applied_operations if isinstance(inputs, MetaTensor) else []
    if ops and isinstance(ops[0], list):  # a collated batch keeps one list per item
        ops = ops[b]
    if not isinstance(ops, list):  # a collated batch without operations holds TraceKeys.NONE
        ops = []
    if any(isinstance(op, dict) and op.get(TraceKeys.CLASS_NAME) == "TaskIntensityd" for op in ops):
        raise UserInputError(
            "the restoration inferer takes images in physical units (HU, SUV, MRI signal) and maps them to the "
            "network's range itself; remove TaskIntensityd from the inference preprocessing and the Invertd of the "
            "prediction from the postprocessing"
        )


def _network_device(network: nn.Module, fallback: torch.device) -> torch.device:
    parameter = next(iter(network.parameters()), None)
    return parameter.device if parameter is not None else torch.device(fallback)
