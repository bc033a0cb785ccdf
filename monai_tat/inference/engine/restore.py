"""Restore a volume: read and check it, resolve task, units and device, run the slice loop, assemble the result."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.devices import resolve_amp, resolve_device
from monai_tat.inference.engine.intensity import IntensityMap
from monai_tat.inference.engine.kspace import kspace_consistency_step
from monai_tat.inference.engine.layout import SliceStaging, choose_slice_axis, empty_like_dense
from monai_tat.inference.engine.network import network_for_slices, network_name, prepare_network
from monai_tat.inference.engine.slice_loop import CancelSignal, ProgressCallback, SliceLoop
from monai_tat.inference.engine.threads import host_threads
from monai_tat.inference.kspace_consistency import KSpaceConsistencyMode, check_kspace_consistency_mode
from monai_tat.inference.task_detection import resolve_task
from monai_tat.inference.units import InputUnits, input_units, task_given_conversion
from monai_tat.io import as_meta_tensor, read_volume
from monai_tat.tasks import TASKS, get_task

__all__ = ["restore_volume", "FIXED_RANGE_TASKS"]

#: Tasks whose model range is a fixed physical window: input clipped, out-of-range voxels kept.
#: (Derived from the task registry; prefer ``get_task(task).fixed_range``.)
FIXED_RANGE_TASKS = tuple(t for t in TASKS if get_task(t).fixed_range)


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
    self_ensemble: bool = False,
    kspace_consistency: KSpaceConsistencyMode = "auto",
    kspace_factor: float | None = None,
    suv_factor: float | None = None,
    rescale_intercept: float | None = None,
) -> MetaTensor:
    """Restore a CT / PET / MRI image with a 2D network, slice by slice.

    Args:
        image: a path (read with :func:`monai_tat.io.read_volume`), a MetaTensor ``(I, J)`` or
            ``(I, J, K)`` in physical units, an array / tensor (identity geometry) or a tuple
            ``(array, affine)`` with a 4x4 RAS affine. A tensor on a GPU is copied to host memory
            (slices are staged there); the result is on the CPU.
        network: a module mapping ``(B, 1, H, W)`` in [0, 1] to ``(B, 1, H, W)`` (TAT, AMIR,
            Restormer or any such module; it is moved to ``device`` and run in eval mode), or a
            :func:`~monai_tat.inference.load_model` spec ("tat", "amir", a checkpoint path).
        task: "ct", "pet", "mri", or None / "auto" to infer it (DICOM modality, then intensities).
        device: "auto" (CUDA when present), "cpu", "cuda", "cuda:N".
        batch_size: slices per forward pass; default 1 on CPU and, on a GPU, as many as its free
            memory holds (measured on the first slice, at most 32). A batch that runs out of GPU
            memory is retried with half as many slices (down to one), never skipped.
        axis: slicing axis of a 3D volume; default the axial (acquisition) axis from the affine.
            Ignored for 2D images.
        progress: ``progress(done, total)`` in slices, called with 0 first and after every batch
            (on a GPU, when the batch's result has reached host memory); it reaches ``total``
            exactly once.
        cancel: a ``threading.Event`` or a callable returning True to stop; checked between batches.
        amp: None (float32), "bf16" or "fp16" autocast; used on CUDA only.
        self_ensemble: average the network over the 8 flips / transpositions of each slice
            (:class:`~monai_tat.inference.self_ensemble.SelfEnsemble`): a little better, 8x slower.
        kspace_consistency: MRI only. "auto" (default): when the input is a k-space-truncated
            magnitude image (detected from its spectrum), the restored slices get the measured
            k-space band back (:mod:`~monai_tat.inference.kspace_consistency`); "on": always (the
            input is asserted to be truncated); "off": never. Other tasks: "auto" and "off" do
            nothing, "on" is refused.
        kspace_factor: truncation factor per in-plane axis for the consistency step (default the
            task's simulator factor, 4).
        suv_factor: a PET in Bq/mL: SUV = value x ``suv_factor`` (see
            :func:`monai_tat.io.suv.suv_factor_from_values`); the task is then PET.
        rescale_intercept: a CT in stored values: HU = value + ``rescale_intercept`` (usually
            -1024); the task is then CT.

    Returns:
        The restored image, float32, in the input's units (a converted image is restored in HU /
        SUV and given back in its own units), with the input's shape, memory order, affine
        (spacing, origin, direction) and metadata (plus ``meta["restoration"]``, whose ``units``
        entry names the units and the conversion).

    Raises:
        UserInputError: bad image (not 2D / 3D, empty, NaN voxels), task, device or model; an
            image not in its task's units (a PET in Bq/mL, a CT in stored values) without its
            conversion, or a conversion for an image that does not need it; a fixed-range image
            without a voxel in the model range.
        RestorationCancelled: ``cancel`` was set.
    """
    consistency_mode = check_kspace_consistency_mode(kspace_consistency)
    if batch_size is not None and int(batch_size) < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    if kspace_factor is not None and not float(kspace_factor) > 1.0:  # checked before the network runs
        raise UserInputError(f"the k-space truncation factor must be above 1, got {kspace_factor}",
                             setting="kspace_factor")
    dev = resolve_device(device)  # once per restoration; everything below takes the torch.device
    amp_dtype = resolve_amp(amp, dev)
    with host_threads():
        volume, value_range = _as_volume(image)
        # a SUV factor means PET, a rescale intercept CT
        task = resolve_task(task_given_conversion(task, suv_factor, rescale_intercept), volume)
        units = input_units(task, volume.as_tensor(), suv_factor=suv_factor, rescale_intercept=rescale_intercept)
        if consistency_mode == "on" and not get_task(task).kspace_consistency:
            raise UserInputError(f"k-space consistency applies to MRI super-resolution only, not to task {task}",
                                 setting="kspace_consistency")
        network = prepare_network(network, dev)
        slice_axis = choose_slice_axis(volume, axis)

        data = volume.as_tensor()  # plain tensor from here on: no MetaTensor dispatch in the loops
        if units.converts:
            data = units.to_task_units(data)  # a converted copy; the input is only read
            value_range = tuple(float(v) for v in torch.aminmax(data))
        mapping = IntensityMap.for_volume(task, data, value_range, slice_axis)
        _refuse_if_nothing_in_range(task, data, mapping, value_range, units)
        restored = empty_like_dense(data)
        staging = SliceStaging(data, restored, slice_axis)
        network = network_for_slices(network, dev, *staging.input_slices.shape, self_ensemble)
        SliceLoop(
            network=network, mapping=mapping, staging=staging, device=dev, amp_dtype=amp_dtype,
            batch_size=int(batch_size) if batch_size is not None else None, progress=progress, cancel=cancel,
        ).run()
        staging.finish()
        del staging  # its views hold the staging copy (a volume) alive; free it before the MRI step
        consistency = kspace_consistency_step(task, data, restored, slice_axis, value_range, consistency_mode,
                                              kspace_factor)
        if units.converts:
            units.from_task_units_(restored)

    meta = dict(volume.meta)
    meta["affine"] = volume.affine.clone()
    if units.converts:
        meta["units"] = units.units
    meta["restoration"] = {"task": task, "network": network_name(network), "axis": slice_axis,
                           "self_ensemble": bool(self_ensemble), "kspace_consistency": consistency,
                           "units": units.record(), "intensity": mapping.record()}
    return MetaTensor(restored, meta=meta)


def _refuse_if_nothing_in_range(task: str, data: torch.Tensor, mapping: IntensityMap,
                                value_range: tuple[float, float], units: InputUnits) -> None:
    """Refuse a fixed-range image without a single voxel in the model range: every voxel would keep
    its input value and the output would be the input, unchanged.

    The range's extremes decide, except when they lie on both sides of the model range; only
    then one pass looks for a voxel inside.
    """
    if not mapping.clip:
        return
    low, high = value_range
    if mapping.lower <= low <= mapping.upper or mapping.lower <= high <= mapping.upper:
        return
    if low < mapping.lower and high > mapping.upper and bool(((data >= mapping.lower) & (data <= mapping.upper)).any()):
        return
    spec = get_task(task)
    shown = f"{low:.4g} to {high:.4g} {spec.units}" + (" after conversion" if units.converts else "")
    raise UserInputError(
        f"no voxel of this {task.upper()} image lies in the model range [{mapping.lower:g}, {mapping.upper:g}] "
        f"{spec.units} (values {shown}): restoring it would return the input unchanged; check that the image is "
        f"in {spec.units} ({spec.units_expected}) and that the task is right",
        setting="task",
    )


def _as_volume(image: Any) -> tuple[MetaTensor, tuple[float, float]]:
    """Read / wrap the input and refuse what cannot be restored (shape, emptiness, NaN).

    Returns the float32 volume and its (min, max), from the one pass that also checks finiteness.
    """
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
    if volume.device.type != "cpu":  # e.g. a CUDA tensor from the Python API: slices are staged on the host
        volume = volume.cpu()
    data = volume.as_tensor()
    # min and max propagate NaN and infinity: one cheap pass both checks and gives the range.
    low, high = (float(v) for v in torch.aminmax(data))
    if not (math.isfinite(low) and math.isfinite(high)):
        n_bad = int((~torch.isfinite(data)).sum())
        n_nan = int(torch.isnan(data).sum())
        raise UserInputError(
            f"the image has {n_nan} NaN and {n_bad - n_nan} infinite voxel(s); replace them (for example with the "
            "background value) before restoring"
        )
    return volume, (low, high)
