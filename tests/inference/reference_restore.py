"""The plain restoration algorithm, the reference the engine's fast paths must reproduce (tests only).

Straightforward and memory-hungry on purpose: the volume is cut into contiguous ``(N, H, W)``
slices, each slice is mapped on its own by :func:`monai_tat.transforms.model_intensity_transform`
(a ``(1, H, W)`` MetaTensor: one pair of bounds per slice, which for MRI is the task's per-slice
mapping and for CT / PET the fixed range), clipped to [0, 1] for fixed-range tasks, run through the
network in batches, inverted with the transform's ``inverse``, reassembled, and for fixed-range
tasks the voxels outside the model range take their input values.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.inference.devices import autocast, resolve_amp, resolve_device
from monai_tat.inference.engine import choose_slice_axis, slices_to_volume, volume_to_slices
from monai_tat.inference.task_detection import resolve_task
from monai_tat.io import as_meta_tensor
from monai_tat.tasks import get_task
from monai_tat.transforms import model_intensity_transform

__all__ = ["plain_restore"]


def plain_restore(
    image: Any,
    network: nn.Module,
    task: str,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    axis: int | None = None,
    amp: str | None = None,
) -> torch.Tensor:
    """The restored volume (float32 tensor of the input's shape) by the plain algorithm."""
    volume = as_meta_tensor(image[0], affine=image[1]) if isinstance(image, tuple) else as_meta_tensor(image)
    volume = volume if volume.dtype == torch.float32 else volume.float()
    task = resolve_task(task, volume)
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    slice_axis = choose_slice_axis(volume, axis)
    fixed_range = get_task(task).fixed_range
    source_slices = volume_to_slices(volume.as_tensor(), slice_axis)  # (N, H, W)

    mapped = []
    for source in source_slices:
        transform = model_intensity_transform(task)
        mapped.append((transform, transform(MetaTensor(source[None].clone()))))
    model_input = torch.stack([m.as_tensor()[0] for _, m in mapped])
    keep_input = None
    if fixed_range:
        keep_input = (model_input < 0.0) | (model_input > 1.0)
        model_input = model_input.clamp(0.0, 1.0)

    restored_model = torch.empty_like(model_input)
    was_training = network.training
    network.to(dev).eval()
    try:
        with torch.inference_mode(), autocast(dev, amp_dtype):
            for start in range(0, model_input.shape[0], batch_size):
                batch = model_input[start : start + batch_size][:, None].to(dev)
                restored_model[start : start + batch_size] = network(batch).float()[:, 0].cpu()
    finally:
        network.train(was_training)

    restored_slices = torch.stack([
        transform.inverse(MetaTensor(restored[None].clone(), meta=dict(m.meta),
                                     applied_operations=list(m.applied_operations))).as_tensor()[0].float()
        for (transform, m), restored in zip(mapped, restored_model)
    ])
    if keep_input is not None:
        restored_slices = torch.where(keep_input, source_slices, restored_slices)
    return slices_to_volume(restored_slices, slice_axis, volume.shape)
