"""A MONAI ``Inferer`` that restores whole volumes slice by slice through the package's engine.

MONAI workflows (``SupervisedEvaluator``, the bundles' ``inference.json`` / ``evaluate.json`` and
the validation during training) hand an inferer a batch of channel-first volumes and the network.
:class:`RestorationInferer` cuts each volume into 2D slices along its axial axis exactly as
:func:`monai_tat.inference.restore_volume` does, runs them in batches (halving a batch that runs
out of GPU memory) and reassembles the volume. Its input is already in the model range (the
preprocessing's :class:`~monai_tat.transforms.TaskIntensityd`); the postprocessing's ``Invertd``
returns the output to physical units.

Example::

    inferer = RestorationInferer(batch_size=8)
    pred = inferer(batch["image"], network, task=batch["task"])   # (B, 1, I, J, K) in [0, 1] units
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
from monai_tat.inference.devices import default_batch_size, resolve_amp
from monai_tat.inference.engine import choose_slice_axis, slices_to_volume, volume_to_slices
from monai_tat.tasks import get_task

# The engine's batch loop (batching, out-of-memory halving). It has no public name yet; this is
# the one place outside the engine that calls it.
from monai_tat.inference.engine import _run_slices as run_slices  # noqa: E402  isort: skip

__all__ = ["RestorationInferer"]

TaskArgument = Union[str, Sequence[str], None]


class RestorationInferer(Inferer):
    """Restore ``(B, 1, *spatial)`` model-range images with a 2D network, slice by slice.

    Per batch item: the slicing axis is the axial axis of the item's affine (``axis`` overrides
    it; a 2D image is one slice); for the tasks with a fixed physical model range (CT, PET) the
    network sees its input clipped to [0, 1] and every voxel outside [0, 1] keeps its input value
    in the output, as in :func:`monai_tat.inference.restore_volume`.

    Args:
        batch_size: slices per forward pass (default: the engine's, 8 on GPU and 1 on CPU).
        axis: slicing axis of 3D volumes, or None for each volume's axial axis.
        amp: None (float32), "bf16" or "fp16" autocast on CUDA.

    Call: ``inferer(inputs, network, task=...)`` where ``task`` is the batch's task names (what a
    DataLoader collates from the items' ``task``; pass it with
    ``monai.engines.PrepareBatchExtraInput({"task": "task"})``). Without ``task`` the task recorded
    by :class:`~monai_tat.transforms.TaskIntensityd` on each input is used.

    Returns:
        a float32 MetaTensor shaped like ``inputs`` with its metadata, on the inputs' device.
    """

    def __init__(self, batch_size: int | None = None, axis: int | None = None, amp: str | bool | None = None) -> None:
        super().__init__()
        if batch_size is not None and int(batch_size) < 1:
            raise UserInputError(f"batch size must be at least 1, got {batch_size}")
        self.batch_size, self.axis, self.amp = batch_size, axis, amp

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args: Any, task: TaskArgument = None,
                 **kwargs: Any) -> torch.Tensor:
        if inputs.ndim not in (4, 5) or inputs.shape[1] != 1:
            raise UserInputError(
                f"the restoration inferer takes (batch, 1, H, W) or (batch, 1, I, J, K) images, got {tuple(inputs.shape)}"
            )
        tasks = self._tasks(inputs, task)
        device = _network_device(network, inputs.device)
        amp_dtype = resolve_amp(self.amp, device)
        restored = [
            self._restore_item(inputs, b, tasks[b], network, device, amp_dtype) for b in range(inputs.shape[0])
        ]
        out = torch.stack(restored)[:, None].to(inputs.device)
        if isinstance(inputs, MetaTensor):
            return MetaTensor(out, meta=inputs.meta, applied_operations=inputs.applied_operations)
        return out

    def _restore_item(self, inputs: torch.Tensor, b: int, task: str, network: nn.Module, device: torch.device,
                      amp_dtype: torch.dtype | None) -> torch.Tensor:
        item = inputs[b, 0]
        item = (item.as_tensor() if isinstance(item, MetaTensor) else item).detach().float().cpu()
        affine = None
        if isinstance(inputs, MetaTensor):
            affine = inputs.affine[b] if inputs.affine.ndim == 3 else inputs.affine
        volume = MetaTensor(item, affine=affine)
        axis = choose_slice_axis(volume, self.axis)
        model_input = item
        outside = None
        if get_task(task).fixed_range:
            outside = (model_input < 0.0) | (model_input > 1.0)
            model_input = model_input.clamp(0.0, 1.0)
        slices = volume_to_slices(model_input, axis)
        batch_size = int(self.batch_size or default_batch_size(device))
        restored = run_slices(network, slices, device, batch_size, amp_dtype, None, None)
        result = slices_to_volume(restored, axis, model_input.shape)
        if outside is not None:
            result = torch.where(outside, item, result)
        return result

    @staticmethod
    def _tasks(inputs: torch.Tensor, task: TaskArgument) -> list[str]:
        n = inputs.shape[0]
        if task is None:
            return [_recorded_task(inputs, b) for b in range(n)]
        names = [task] * n if isinstance(task, str) else [str(t) for t in task]
        if len(names) != n:
            raise UserInputError(f"got {len(names)} task names for a batch of {n} images")
        return [get_task(t).name for t in names]


def _recorded_task(inputs: torch.Tensor, b: int) -> str:
    """The task TaskIntensityd recorded on batch item ``b``."""
    ops = inputs.applied_operations if isinstance(inputs, MetaTensor) else []
    if ops and isinstance(ops[0], list):  # a collated batch keeps one list per item
        ops = ops[b]
    for op in reversed(ops):
        info = op.get(TraceKeys.EXTRA_INFO) or {}
        if op.get(TraceKeys.CLASS_NAME) == "TaskIntensityd" and "task" in info:
            return str(info["task"])
    raise UserInputError(
        "the restoration inferer needs each image's task: map the images with TaskIntensityd, or pass task=... "
        "(for example with monai.engines.PrepareBatchExtraInput({'task': 'task'}))"
    )


def _network_device(network: nn.Module, fallback: torch.device) -> torch.device:
    parameter = next(iter(network.parameters()), None)
    return parameter.device if parameter is not None else torch.device(fallback)
