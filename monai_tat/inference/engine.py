"""Restore a whole 2D image or 3D volume slice by slice with a 2D network.

This is the one place that turns a volume into network-sized slices and back; the CLI, the MONAI
bundles and the Slicer module call it.

Intensity handling (per task, :func:`monai_tat.transforms.model_intensity_transform`):

- The volume is mapped to the model range [0, 1] once, for the whole volume (MRI percentiles are
  volume statistics), and the restored slices are mapped back with the exact inverse.
- CT and PET have a fixed physical model range (CT [-1024, 3072] HU, PET [0, 20] SUV). The network
  sees its input clipped to [0, 1] as in training, and every voxel whose input lies outside the
  range (metal or bone above 3072 HU, FOV padding below -1024 HU, PET hot spots above 20 SUV) keeps
  its input value in the output: the network cannot restore what it never saw.
- MRI uses per-volume percentiles without clipping: every voxel is restored.
- NaN or infinite input voxels are refused with :class:`~monai_tat.errors.UserInputError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.devices import autocast, default_batch_size, is_out_of_memory, resolve_amp, resolve_device
from monai_tat.inference.models import load_model
from monai_tat.inference.tasks import resolve_task
from monai_tat.io import as_meta_tensor, axial_axis, read_volume
from monai_tat.transforms import model_intensity_transform

__all__ = [
    "restore_volume",
    "RestorationCancelled",
    "ProgressCallback",
    "CancelSignal",
    "FIXED_RANGE_TASKS",
    "choose_slice_axis",
    "volume_to_slices",
    "slices_to_volume",
]

ProgressCallback = Callable[[int, int], None]
CancelSignal = Union[threading.Event, Callable[[], bool], None]

#: Tasks whose model range is a fixed physical window: input clipped, out-of-range voxels kept.
FIXED_RANGE_TASKS = ("ct", "pet")


class RestorationCancelled(Exception):
    """The caller's ``cancel`` signal stopped a restoration between two batches; nothing was produced."""


def restore_volume(
    image: Any,
    network: nn.Module | str | Path,
    task: str | None = None,
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    axis: int | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    amp: str | bool | None = None,
) -> MetaTensor:
    """Restore a CT / PET / MRI image with a 2D network, slice by slice.

    Args:
        image: a path (read with :func:`monai_tat.io.read_volume`), a MetaTensor ``(I, J)`` or
            ``(I, J, K)`` in physical units, an array / tensor (identity geometry) or a tuple
            ``(array, affine)`` with a 4x4 RAS affine.
        network: a module mapping ``(B, 1, H, W)`` in [0, 1] to ``(B, 1, H, W)`` (TAT, AMIR,
            Restormer or any such module; it is moved to ``device`` and run in eval mode), or a
            :func:`~monai_tat.inference.load_model` spec ("tat", "amir", a checkpoint path).
        task: "ct", "pet", "mri", or None / "auto" to infer it (DICOM modality, then intensities).
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:N".
        batch_size: slices per forward pass; default 8 on GPU, 1 on CPU. A batch that runs out of
            GPU memory is retried with half as many slices (down to one), never skipped.
        axis: slicing axis of a 3D volume; default the axial (acquisition) axis from the affine.
            Ignored for 2D images.
        progress: ``progress(done, total)`` in slices, called with 0 first and after every batch;
            it reaches ``total`` exactly once.
        cancel: a ``threading.Event`` or a callable returning True to stop; checked between batches.
        amp: None (float32), "bf16" or "fp16" autocast; used on CUDA only.

    Returns:
        The restored image, float32, in physical units, with the input's shape, affine (spacing,
        origin, direction) and metadata (plus ``meta["restoration"]``).

    Raises:
        UserInputError: bad image (not 2D / 3D, empty, NaN voxels), task, device or model.
        RestorationCancelled: ``cancel`` was set.
    """
    volume = _as_volume(image)
    task = resolve_task(task, volume)
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    model = load_model(network, dev) if isinstance(network, (str, Path)) else network
    if not isinstance(model, nn.Module):
        raise UserInputError(f"network must be a torch.nn.Module or a model spec, got {type(model).__name__}")
    if batch_size is not None and int(batch_size) < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    slice_axis = choose_slice_axis(volume, axis)

    # The one call site of the per-task intensity mapping (and its inverse below).
    transform = model_intensity_transform(task)
    normalised = transform(volume)
    model_input = normalised.as_tensor().float()
    keep_input = None
    if task in FIXED_RANGE_TASKS:
        keep_input = (model_input < 0.0) | (model_input > 1.0)
        model_input = model_input.clamp(0.0, 1.0)

    slices = volume_to_slices(model_input, slice_axis)
    restored_slices = _run_slices(
        model, slices, dev, batch_size or default_batch_size(dev), amp_dtype, progress, cancel
    )
    restored_model = slices_to_volume(restored_slices, slice_axis, model_input.shape)

    as_normalised = MetaTensor(
        restored_model.to(normalised.dtype), meta=dict(normalised.meta),
        applied_operations=list(normalised.applied_operations),
    )
    restored = transform.inverse(as_normalised).as_tensor().float()
    if keep_input is not None:
        restored = torch.where(keep_input, volume.as_tensor().float(), restored)

    meta = dict(volume.meta)
    meta["affine"] = volume.affine.clone()
    meta["restoration"] = {"task": task, "network": type(model).__name__, "axis": slice_axis}
    return MetaTensor(restored, meta=meta)


def _as_volume(image: Any) -> MetaTensor:
    """Read / wrap the input and refuse what cannot be restored (shape, emptiness, NaN)."""
    if isinstance(image, (str, Path)):
        volume = read_volume(image)
    elif isinstance(image, tuple) and len(image) == 2:
        volume = as_meta_tensor(image[0], affine=image[1])
    else:
        volume = as_meta_tensor(image)
    if volume.ndim not in (2, 3):
        raise UserInputError(
            f"restoration takes a 2D image or a 3D volume without channel, got shape {tuple(volume.shape)}"
        )
    if volume.numel() == 0:
        raise UserInputError(f"the image is empty (shape {tuple(volume.shape)})")
    if volume.is_complex() or volume.dtype == torch.bool:
        raise UserInputError(f"the image has data type {volume.dtype}; pass real-valued intensities")
    volume = volume if volume.dtype == torch.float32 else volume.float()
    n_bad = int((~torch.isfinite(volume.as_tensor())).sum())
    if n_bad:
        n_nan = int(torch.isnan(volume.as_tensor()).sum())
        raise UserInputError(
            f"the image has {n_nan} NaN and {n_bad - n_nan} infinite voxel(s); replace them (for example with the "
            "background value) before restoring"
        )
    return volume


def choose_slice_axis(volume: MetaTensor, axis: int | None) -> int | None:
    """The slicing axis of a 3D volume (None for 2D)."""
    if volume.ndim == 2:
        return None
    if axis is None:
        return axial_axis(volume.affine.cpu().numpy(), 3)
    if not -3 <= int(axis) <= 2:
        raise UserInputError(f"axis must be 0, 1 or 2 for a 3D volume, got {axis}")
    return int(axis) % 3


def volume_to_slices(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``(N, H, W)`` slices; in-plane axes transposed so rows follow j and columns i (DICOM order)."""
    if axis is None:
        return x.transpose(0, 1)[None].contiguous()
    return x.movedim(axis, 0).transpose(1, 2).contiguous()


def slices_to_volume(slices: torch.Tensor, axis: int | None, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`volume_to_slices`."""
    if axis is None:
        out = slices[0].transpose(0, 1)
    else:
        out = slices.transpose(1, 2).movedim(0, axis)
    if out.shape != shape:
        raise RuntimeError(f"slices reassembled to {tuple(out.shape)}, expected {tuple(shape)}")
    return out.contiguous()


def _is_cancelled(cancel: CancelSignal) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _run_slices(
    model: nn.Module,
    slices: torch.Tensor,
    device: torch.device,
    batch_size: int,
    amp_dtype: torch.dtype | None,
    progress: ProgressCallback | None,
    cancel: CancelSignal,
) -> torch.Tensor:
    """Run ``model`` over ``(N, H, W)`` slices in batches; return ``(N, H, W)`` float32 on CPU."""
    total = slices.shape[0]
    out = torch.empty_like(slices, dtype=torch.float32)
    was_training = model.training
    model.to(device).eval()
    if progress is not None:
        progress(0, total)
    done, size = 0, int(batch_size)
    try:
        while done < total:
            if _is_cancelled(cancel):
                raise RestorationCancelled(f"cancelled after {done} of {total} slices")
            count = min(size, total - done)
            try:
                result = _forward(model, slices[done : done + count], device, amp_dtype)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                if not is_out_of_memory(err):
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if count == 1:
                    raise UserInputError(
                        f"out of memory on {device} even for one {tuple(slices.shape[1:])} slice; "
                        "use --device cpu or a GPU with more memory"
                    ) from err
                size = max(1, count // 2)  # retry the same slices, smaller; keep the smaller size
                continue
            out[done : done + count] = result
            done += count
            if progress is not None:
                progress(done, total)
        if _is_cancelled(cancel):
            raise RestorationCancelled(f"cancelled after all {total} slices, before the result was returned")
    finally:
        model.train(was_training)
    return out


def _forward(model: nn.Module, batch: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """One batch ``(B, H, W)`` through the network in inference mode; returns ``(B, H, W)`` float32 CPU."""
    x = batch[:, None].to(device)
    with torch.inference_mode(), autocast(device, amp_dtype):
        y = model(x)
    if isinstance(y, (tuple, list)):  # e.g. AMIR's (image, balance loss) if a subclass forgets eval mode
        y = y[0]
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserInputError(
            f"the network returned {shape} for input {tuple(x.shape)}; a restoration network must map (B, 1, H, W) "
            "to the same shape"
        )
    y = y.float()
    if not bool(torch.isfinite(y).all()):
        raise UserInputError(
            "the network produced NaN or infinite values; if mixed precision was on, run in float32 (--amp none)"
        )
    return y[:, 0].cpu()
