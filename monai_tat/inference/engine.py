"""Restore a whole 2D image or 3D volume slice by slice with a 2D network.

This is the one place that turns a volume into network-sized slices and back; the CLI, the MONAI
bundles and the Slicer module call it.

Intensity handling (per task, numbers from :func:`monai_tat.tasks.get_task`; the same affine map
as :func:`monai_tat.transforms.model_intensity_transform` and its inverse, applied per block of
slices instead of to the whole volume; the tests check that both give the same values):

- The volume is mapped to the model range [0, 1] with bounds fixed for the whole volume (MRI
  percentiles are volume statistics, computed once), and the restored slices are mapped back with
  the exact inverse.
- CT and PET have a fixed physical model range (CT [-1024, 3072] HU, PET [0, 20] SUV). The network
  sees its input clipped to [0, 1] as in training, and every voxel whose input lies outside the
  range (metal or bone above 3072 HU, FOV padding below -1024 HU, PET hot spots above 20 SUV) keeps
  its input value in the output: the network cannot restore what it never saw.
- MRI uses per-volume percentiles without clipping: every voxel is restored.
- NaN or infinite input voxels are refused with :class:`~monai_tat.errors.UserInputError`.
- Units are checked, not assumed (:mod:`monai_tat.inference.units`): a CT in stored values or a
  PET in Bq/mL is refused, or converted to HU / SUV when its rescale intercept / SUV factor is
  given and given back in its own units. A fixed-range image without a single voxel in the model
  range is refused: its output would be the input, unchanged.

How the work flows (host memory above the input: the output, one staging copy when the slices'
rows are not contiguous in the input, and a few blocks of slices; time: a handful of passes):

- One pass (min and max) checks that every voxel is finite and tells whether any lies outside
  the model range; MRI percentiles are exact (NumPy's) from one partitioned float32 copy.
- Slices are read from a *row-contiguous* view of the volume: the input itself when its rows (the
  in-plane axis shown as columns) are contiguous, else a staging copy made with torch's blocked 2D
  transpose (for a C-ordered ``(I, J, K)`` volume sliced along K, the common case); restored
  slices are written into the same view (the output, or the staging copy, which is transposed into
  the output at the end).
- Blocks of slices are mapped, clipped and masked in small reusable buffers, a cache-sized chunk
  at a time; restored values are mapped back and written block by block (the kept voxels through
  an exact arithmetic select, no per-voxel branch). On CUDA the buffers are pinned, batches go to
  the GPU with non-blocking copies and come back the same way, and the next block is prepared
  while the GPU runs the current one (double buffering). Without a batch size, the first slice's
  peak GPU memory and ``torch.cuda.mem_get_info`` set it; a batch that runs out of memory is
  halved.
- The engine's own host work runs on one intra-op thread (the network gets the caller's thread
  count) and on plain tensors: the MetaTensor is unwrapped at the start and rebuilt at the end.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.cpu_speed import eager_network, prepare_cpu_network
from monai_tat.inference.devices import (
    autocast,
    batch_size_for_memory,
    default_batch_size,
    free_memory_bytes,
    is_out_of_memory,
    resolve_amp,
    resolve_device,
)
from monai_tat.inference.kspace_consistency import (
    SLICES_PER_STEP,
    KSpaceConsistencyMode,
    check_kspace_consistency_mode,
    detect_truncation_band,
    enforce_magnitude_consistency,
)
from monai_tat.inference.models import load_model
from monai_tat.inference.self_ensemble import SelfEnsemble
from monai_tat.inference.tasks import resolve_task
from monai_tat.inference.units import InputUnits, input_units, task_given_conversion
from monai_tat.io import as_meta_tensor, axial_axis, read_volume
from monai_tat.tasks import TASKS, get_task

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
#: (Derived from the task registry; prefer ``get_task(task).fixed_range``.)
FIXED_RANGE_TASKS = tuple(t for t in TASKS if get_task(t).fixed_range)

#: A block of slices (the unit of staging and of the CPU's elementwise work) holds at least this
#: many bytes (or 1/16 of the volume if less), so that small batches still cost few Python steps.
_MIN_BLOCK_BYTES = 4 * 2**20
#: The chains of elementwise passes on the host run over this many bytes of slices at a time.
_CHUNK_BYTES = 2 * 2**20
#: Most slices per batch chosen from free GPU memory (more gives no speed).
_MAX_AUTO_BATCH = 32


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
    with _host_threads():
        return _restore(image, network, task, device, batch_size, axis, progress, cancel, amp, self_ensemble,
                        kspace_consistency, kspace_factor, suv_factor, rescale_intercept)


def _restore(
    image: Any,
    network: nn.Module | str | Path,
    task: str | None,
    device: str | torch.device,
    batch_size: int | None,
    axis: int | None,
    progress: ProgressCallback | None,
    cancel: CancelSignal,
    amp: str | bool | None,
    self_ensemble: bool,
    kspace_consistency: KSpaceConsistencyMode,
    kspace_factor: float | None,
    suv_factor: float | None = None,
    rescale_intercept: float | None = None,
) -> MetaTensor:
    """:func:`restore_volume`'s work, on the engine's host threads."""
    consistency_mode = check_kspace_consistency_mode(kspace_consistency)
    volume, value_range = _as_volume(image)
    # a SUV factor means PET, a rescale intercept CT
    task = resolve_task(task_given_conversion(task, suv_factor, rescale_intercept), volume)
    units = input_units(task, volume.as_tensor(), suv_factor=suv_factor, rescale_intercept=rescale_intercept)
    if consistency_mode == "on" and task != "mri":
        raise UserInputError(f"k-space consistency applies to MRI super-resolution only, not to task {task}",
                             setting="kspace_consistency")
    if kspace_factor is not None and not float(kspace_factor) > 1.0:  # checked before the network runs
        raise UserInputError(f"the k-space truncation factor must be above 1, got {kspace_factor}",
                             setting="kspace_factor")
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    model = load_model(network, dev) if isinstance(network, (str, Path)) else network
    if not isinstance(model, nn.Module):
        raise UserInputError(f"network must be a torch.nn.Module or a model spec, got {type(model).__name__}")
    if batch_size is not None and int(batch_size) < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}")
    slice_axis = choose_slice_axis(volume, axis)

    data = volume.as_tensor()  # plain tensor from here on: no MetaTensor dispatch in the loops
    if units.converts:
        data = units.to_task_units(data)  # a converted copy; the input is only read
        value_range = tuple(float(v) for v in torch.aminmax(data))
    mapping = _IntensityMap.for_volume(task, data, value_range)
    _refuse_if_nothing_in_range(task, data, mapping, value_range, units)
    restored = _empty_like_dense(data)
    staging = _SliceStaging(data, restored, slice_axis)
    slices, height, width = staging.input_slices.shape
    with _network_threads():  # on the CPU, compiled when it pays off, for the network's thread count
        model = prepare_cpu_network(model, dev, height, width, slices * (8 if self_ensemble else 1))
    if self_ensemble:
        model = SelfEnsemble(model)
    _Restoration(
        model=model, mapping=mapping, staging=staging, device=dev, amp_dtype=amp_dtype,
        batch_size=int(batch_size) if batch_size is not None else None, progress=progress, cancel=cancel,
    ).run()
    staging.finish()
    del staging  # its views hold the staging copy (a volume) alive; free it before the MRI step
    consistency = _kspace_consistency(task, data, restored, slice_axis, value_range, consistency_mode, kspace_factor)
    if units.converts:
        units.from_task_units_(restored)

    meta = dict(volume.meta)
    meta["affine"] = volume.affine.clone()
    if units.converts:
        meta["units"] = units.units
    network_name = type(eager_network(model.network if self_ensemble else model)).__name__
    meta["restoration"] = {"task": task, "network": network_name, "axis": slice_axis,
                           "self_ensemble": bool(self_ensemble), "kspace_consistency": consistency,
                           "units": units.record()}
    return MetaTensor(restored, meta=meta)


def _refuse_if_nothing_in_range(task: str, data: torch.Tensor, mapping: _IntensityMap,
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


def _kspace_consistency(task: str, data: torch.Tensor, restored: torch.Tensor, axis: int | None,
                        value_range: tuple[float, float], mode: str, factor: float | None) -> dict[str, Any]:
    """Apply the MRI k-space consistency step to ``restored`` in place when ``mode`` asks for it.

    Returns the record kept in ``meta["restoration"]["kspace_consistency"]``: whether it was
    applied, and the band or the reason it was not.
    """
    if task != "mri" or mode == "off":
        return {"mode": mode, "applied": False, "reason": "off" if mode == "off" else f"not used for {task}"}
    factor = float(factor if factor is not None else get_task("mri").simulator_defaults.get("factor", 4.0))
    if mode == "auto" and value_range[0] < 0.0:
        return {"mode": mode, "applied": False, "reason": "the input has negative values: not a magnitude image"}
    input_slices, output_slices = _slice_view(data, axis), _slice_view(restored, axis)
    band = detect_truncation_band(input_slices, factor, force=mode == "on")
    if band is None:
        return {"mode": mode, "applied": False, "factor": factor,
                "reason": f"the input is not a {factor:g}x k-space-truncated image"}
    for start in range(0, input_slices.shape[0], SLICES_PER_STEP):
        stop = start + SLICES_PER_STEP
        output_slices[start:stop] = enforce_magnitude_consistency(output_slices[start:stop], input_slices[start:stop], band)
    return {"mode": mode, "applied": True, "factor": factor, "band": band.as_dict()}


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
    """``(N, H, W)`` slices; in-plane axes transposed so rows follow j and columns i (DICOM order).

    A contiguous copy; :func:`_slice_view` is the same arrangement as a view.
    """
    return _slice_view(x, axis).contiguous()


def slices_to_volume(slices: torch.Tensor, axis: int | None, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`volume_to_slices`."""
    if axis is None:
        out = slices[0].transpose(0, 1)
    else:
        out = slices.transpose(1, 2).movedim(0, axis)
    if out.shape != shape:
        raise RuntimeError(f"slices reassembled to {tuple(out.shape)}, expected {tuple(shape)}")
    return out.contiguous()


def _slice_view(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``(N, H, W)`` view of a volume (or ``(1, H, W)`` of a 2D image): rows j, columns i."""
    if axis is None:
        return x.transpose(0, 1)[None]
    return x.movedim(axis, 0).transpose(1, 2)


# --------------------------------------------------------------------------------------------
# Intensity mapping


@dataclass(frozen=True)
class _IntensityMap:
    """``model = (x - lower) / (upper - lower)`` (float32, the transforms' exact arithmetic) and back.

    ``clip``: fixed-range task (input clipped to [0, 1], out-of-range voxels kept). ``any_outside``:
    some voxel of this volume lies outside [0, 1] after the map (else no mask is needed).
    """

    lower: float
    upper: float
    clip: bool
    any_outside: bool

    @classmethod
    def for_volume(cls, task: str, data: torch.Tensor, value_range: tuple[float, float]) -> _IntensityMap:
        spec = get_task(task)
        if spec.model_range is not None:
            lower, upper = (float(v) for v in spec.model_range)
        else:
            lower, upper = _exact_percentiles(data, spec.model_percentiles)
            if upper - lower <= 1e-12 * max(1.0, abs(lower)):
                upper = lower + 1.0  # a constant image: shift only (as MRINormalize)
        mapping = cls(lower, upper, spec.fixed_range, True)
        # The map is monotonic in float32 too, so the extremes tell whether any voxel leaves [0, 1].
        low, high = mapping.to_model(torch.tensor(value_range, dtype=torch.float32)).tolist()
        return cls(lower, upper, spec.fixed_range, low < 0.0 or high > 1.0)

    def to_model(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``(x - lower) / (upper - lower)`` written to ``out`` (same shape) or a new tensor."""
        out = torch.sub(x, self.lower, out=out) if out is not None else torch.sub(x, self.lower)
        return out.div_(self.span)

    @property
    def span(self) -> float:
        """``upper - lower``: model-range values times this, plus ``lower``, are physical values."""
        return self.upper - self.lower


def _exact_percentiles(data: torch.Tensor, percentiles: tuple[float, float]) -> tuple[float, float]:
    """``numpy.percentile(data.astype(float64), percentiles)`` ("linear" method), exactly, without the
    float64 copies: a float32 copy is partitioned at the needed ranks and the neighbours are
    interpolated in float64 with NumPy's formula. Memory: one float32 copy of ``data``."""
    values = np.array(data.detach().cpu().numpy(), dtype=np.float32, order="K").ravel(order="K")  # one copy
    n = values.size
    quantiles = np.asarray(percentiles, dtype=np.float64) / 100
    virtual = (n - 1) * quantiles
    below = np.floor(virtual)
    above_bounds = virtual >= n - 1
    prev_index = np.where(above_bounds, n - 1, below).astype(np.intp)
    next_index = np.where(above_bounds, n - 1, below + 1).astype(np.intp)
    values.partition(np.unique(np.concatenate(([0, n - 1], prev_index, next_index))))
    a = values[prev_index].astype(np.float64)
    b = values[next_index].astype(np.float64)
    gamma = virtual - np.where(above_bounds, -1, below)
    diff = b - a
    result = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return float(result[0]), float(result[1])


# --------------------------------------------------------------------------------------------
# Memory layout: row-contiguous slice views of the input and the output


def _numpy_backed_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 tensor allocated by NumPy, which asks the kernel for transparent huge
    pages: filling a large fresh buffer costs a fraction of torch's own allocation (page faults)."""
    return torch.from_numpy(np.empty(shape, dtype=np.float32))


def _memory_order(x: torch.Tensor) -> list[int] | None:
    """Dimensions of ``x`` from the outermost to the innermost in memory, if ``x`` is dense
    (a permutation of a contiguous tensor); None otherwise."""
    order = sorted(range(x.ndim), key=lambda d: (-x.stride(d), -x.shape[d]))
    if x.permute(order).is_contiguous():
        return order
    return None


def _empty_like_dense(x: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like ``x`` with ``x``'s memory order (C order if ``x`` is not dense).

    Its memory is touched (zeroed) at once: the kernel's huge pages freed by earlier work are most
    likely still available now, while faulting them in at the end of a restoration was measured to
    stall on memory compaction (up to 25 copies' time on a busy machine).
    """
    order = _memory_order(x) or list(range(x.ndim))
    storage = _numpy_backed_empty(tuple(x.shape[d] for d in order)).zero_()
    return storage.permute([order.index(d) for d in range(x.ndim)])


def _transpose_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)`` for two same-shape tensors with different memory orders, cache-blocked.

    When both are dense and their memory orders differ by moving one dimension from one end to
    the other (the cases of slicing, below), the copy is a set of 2D transposes, which torch copies
    block by block; anything else uses a plain ``copy_``.
    """
    src_order, dst_order = _memory_order(src), _memory_order(dst)
    if src_order is None or dst_order is None or src_order == dst_order:
        dst.copy_(src)
        return
    src_mem = src.permute(src_order)  # contiguous
    moved = [dst_order.index(d) for d in src_order]  # where each src-memory dim sits in dst memory
    ndim = src.ndim
    if moved[0] == ndim - 1 and moved[1:] == list(range(ndim - 1)):
        # The outermost dim of src becomes the innermost of dst: one (A, rest) -> (rest, A) transpose.
        a = src_mem.shape[0]
        dst.permute(dst_order).view(-1, a).copy_(src_mem.reshape(a, -1).t())
    elif ndim == 3 and moved == [0, 2, 1]:
        # The two inner dims swap: one 2D transpose per outer index (in dst's memory order).
        dst_in_order, src_in_dst_order = dst.permute(dst_order), src.permute(dst_order)
        for index in range(dst_in_order.shape[0]):
            dst_in_order[index].copy_(src_in_dst_order[index])
    elif moved[-1] == 0 and moved[:-1] == list(range(1, ndim)):
        # The innermost dim of src becomes the outermost of dst: one (rest, A) -> (A, rest) transpose.
        a = src_mem.shape[-1]
        dst.permute(dst_order).view(a, -1).copy_(src_mem.reshape(-1, a).t())
    else:
        dst.copy_(src)


class _SliceStaging:
    """Row-contiguous ``(N, H, W)`` views to read input slices from and write restored slices to.

    When the input's in-plane column axis (W) is innermost in memory, the views are the input and
    the output themselves. Otherwise the input is copied once into a staging tensor with W innermost
    (a blocked transposition); restored slices overwrite the consumed input slices there, and
    :meth:`finish` transposes the staging tensor into the output.
    """

    def __init__(self, data: torch.Tensor, out: torch.Tensor, axis: int | None) -> None:
        self.out, self.axis = out, axis
        slices = _slice_view(data, axis)
        self.staged: torch.Tensor | None = None
        if slices.stride(-1) == 1:
            self.input_slices, self.output_slices = slices, _slice_view(out, axis)
            return
        w_dim = 0  # W is the first remaining (i) axis: dim 0, or dim 1 when slicing along 0
        if axis == 0:
            w_dim = 1
        order = [d for d in (_memory_order(data) or list(range(data.ndim))) if d != w_dim] + [w_dim]
        storage = _numpy_backed_empty(tuple(data.shape[d] for d in order))
        staged = storage.permute([order.index(d) for d in range(data.ndim)])
        _transpose_copy(staged, data)
        self.staged = staged
        self.input_slices = self.output_slices = _slice_view(staged, axis)

    @property
    def total(self) -> int:
        return int(self.input_slices.shape[0])

    def finish(self) -> None:
        """Move the restored slices into the output (when they were staged)."""
        if self.staged is not None:
            _transpose_copy(self.out, self.staged)
            self.staged = None


# --------------------------------------------------------------------------------------------
# The slice loop


#: The caller's intra-op thread count while the engine's own host work runs on one thread.
_caller_threads = threading.local()


@contextlib.contextmanager
def _host_threads() -> Iterator[None]:
    """Run the engine's host work (elementwise passes over blocks of slices, transposes) on one
    intra-op thread; :func:`_forward` gives the network the caller's thread count back.

    These passes are memory-bound and short: one thread streams them about as fast as several, and
    every multi-threaded op is a fork / join whose cost explodes when other processes hold the cores
    (measured on a busy 2-core machine: 2 threads were 3 to 9 times slower than 1).
    """
    threads = torch.get_num_threads()
    _caller_threads.count = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _caller_threads.count = None


@contextlib.contextmanager
def _network_threads() -> Iterator[None]:
    """The caller's intra-op thread count, inside :func:`_host_threads`."""
    threads = getattr(_caller_threads, "count", None)
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(1)


def _is_cancelled(cancel: CancelSignal) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _use_pipeline(device: torch.device) -> bool:
    """Overlap host work with the device (double-buffered blocks): on CUDA. Tests force it on CPU."""
    return device.type == "cuda"


@dataclass
class _Block:
    """Slices ``[start, start + count)`` staged in buffer set ``slot``."""

    start: int
    count: int
    slot: int
    batches: list[tuple[int, int]] = field(default_factory=list)  # (first slice in block, count)
    event: Any = None


class _Buffers:
    """Per-slot reusable ``(capacity, H, W)`` float32 buffers: the model input and the network output
    (pinned on CUDA), and for fixed-range tasks ``kept_input`` (the input where it lies outside the
    model range, else 0) and ``restored_weight`` (0 there, else 1)."""

    def __init__(self, slice_shape: tuple[int, int], pinned: bool, with_mask: bool) -> None:
        self.slice_shape, self.pinned, self.with_mask = slice_shape, pinned, with_mask
        self.slots: dict[int, dict[str, torch.Tensor]] = {}

    def get(self, slot: int, count: int) -> dict[str, torch.Tensor]:
        buffers = self.slots.get(slot)
        if buffers is None or buffers["model_input"].shape[0] < count:
            shape = (count, *self.slice_shape)
            buffers = {
                "model_input": torch.empty(shape, dtype=torch.float32, pin_memory=self.pinned),
                "network_output": torch.empty(shape, dtype=torch.float32, pin_memory=self.pinned),
            }
            if self.with_mask:
                buffers["kept_input"] = torch.empty(shape, dtype=torch.float32)
                buffers["restored_weight"] = torch.empty(shape, dtype=torch.float32)
            self.slots[slot] = buffers
        return {name: buffer[:count] for name, buffer in buffers.items()}


class _Restoration:
    """Run ``model`` over the staged slices block by block (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        mapping: _IntensityMap,
        staging: _SliceStaging,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        batch_size: int | None,
        progress: ProgressCallback | None,
        cancel: CancelSignal,
    ) -> None:
        self.model, self.mapping, self.staging = model, mapping, staging
        self.device, self.amp_dtype = device, amp_dtype
        self.progress, self.cancel = progress, cancel
        self.total = staging.total
        self.slice_shape = tuple(staging.input_slices.shape[1:])
        self.pipelined = _use_pipeline(device)
        # On a GPU without a given batch size, the first batch (one slice) measures the memory.
        self.measure_batch = batch_size is None and device.type == "cuda"
        self.batch = batch_size or default_batch_size(device)
        self.buffers = _Buffers(
            self.slice_shape, pinned=device.type == "cuda", with_mask=mapping.clip and mapping.any_outside
        )
        self.done = 0

    def run(self) -> None:
        was_training = self.model.training
        self.model.to(self.device).eval()
        if self.progress is not None:
            self.progress(0, self.total)
        try:
            pending: _Block | None = None
            start, slot = 0, 0
            while start < self.total:
                block = _Block(start, min(self._block_size(), self.total - start), slot)
                self._stage(block)
                self._run(block)
                if pending is not None:
                    self._finish(pending)
                pending = block
                if not self.pipelined:
                    self._finish(pending)
                    pending = None
                # a second buffer set only when two blocks are in flight (CUDA pipeline)
                start, slot = start + block.count, (1 - slot) if self.pipelined else 0
            if pending is not None:
                self._finish(pending)
            if _is_cancelled(self.cancel):
                raise RestorationCancelled(
                    f"cancelled after all {self.total} slices, before the result was returned"
                )
        finally:
            self.model.train(was_training)

    def _block_size(self) -> int:
        if self.measure_batch:
            return 1
        if self.pipelined:
            return self.batch
        slice_bytes = 4 * self.slice_shape[0] * self.slice_shape[1]
        min_bytes = min(_MIN_BLOCK_BYTES, slice_bytes * self.total // 16)  # small volumes: small buffers
        min_slices = max(1, min_bytes // max(1, slice_bytes))
        return self.batch * max(1, -(-min_slices // self.batch))

    def _chunks(self, count: int) -> list[tuple[int, int]]:
        """``[lo, hi)`` runs of slices of about :data:`_CHUNK_BYTES`: each chain of elementwise
        passes works on data that stays in cache."""
        step = max(1, _CHUNK_BYTES // (4 * self.slice_shape[0] * self.slice_shape[1]))
        return [(lo, min(lo + step, count)) for lo in range(0, count, step)]

    def _stage(self, block: _Block) -> None:
        """Host: model-range input of the block, clipped for fixed-range tasks, and where it was clipped."""
        buffers = self.buffers.get(block.slot, block.count)
        for lo, hi in self._chunks(block.count):
            raw = self.staging.input_slices[block.start + lo : block.start + hi]
            model_input = buffers["model_input"][lo:hi]
            if "kept_input" not in buffers:  # MRI, or no voxel outside the range: nothing to clip or keep
                self.mapping.to_model(raw, out=model_input)
                continue
            unclipped = self.mapping.to_model(raw, out=buffers["restored_weight"][lo:hi])
            torch.clamp(unclipped, 0.0, 1.0, out=model_input)
            # unclipped - clipped is non-zero exactly where clipping acted: outside = 1.0 there, else 0.0;
            # kept input = input * outside (the input's value, or 0) and restored weight = 1 - outside.
            outside = unclipped.sub_(model_input).abs_().sign_()
            torch.mul(raw, outside, out=buffers["kept_input"][lo:hi])
            outside.neg_().add_(1.0)

    def _run(self, block: _Block) -> None:
        """Network over the block in batches (retrying smaller on out-of-memory); outputs to host."""
        buffers = self.buffers.get(block.slot, block.count)
        offset = 0
        while offset < block.count:
            if _is_cancelled(self.cancel):
                raise RestorationCancelled(f"cancelled after {self.done} of {self.total} slices")
            count = min(self.batch, block.count - offset)
            batch = buffers["model_input"][offset : offset + count]
            try:
                if self.measure_batch:
                    result = self._measure_and_forward(batch)
                else:
                    result = _forward(self.model, batch, self.device, self.amp_dtype)
                    self._to_host(result, buffers["network_output"][offset : offset + count])
            except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
                if not is_out_of_memory(err):
                    raise
                if count == 1:
                    raise UserInputError(
                        f"out of memory on {self.device} even for one {self.slice_shape} slice "
                        f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                        "use --device cpu or a GPU with more memory"
                    ) from err
                self.batch = max(1, count // 2)  # retry the same slices, smaller; keep the smaller size
                out_of_memory = True
            else:
                out_of_memory = False
            if out_of_memory:
                # Past the except block the error and its traceback (which holds the failed batch's
                # activations) are gone, so the cache can really hand their memory back.
                _release_cached_memory(self.device)
                continue
            if self.measure_batch:
                self._to_host(result, buffers["network_output"][offset : offset + count])
                self.measure_batch = False
            block.batches.append((offset, count))
            offset += count
            if not self.pipelined:
                self._report(count)
        if self.pipelined and self.device.type == "cuda":
            block.event = _completion_event(self.device)

    def _to_host(self, result: torch.Tensor, destination: torch.Tensor) -> None:
        """Network output into the host buffer: on CPU mapped back and checked at once (the scaling
        replaces a copy), from CUDA a non-blocking copy (mapped back in :meth:`_finish`)."""
        if result.device.type == "cpu":  # map back while it is in cache
            torch.mul(result, self.mapping.span, out=destination)
            destination.add_(self.mapping.lower)
            _check_finite(destination)
        else:
            destination.copy_(result, non_blocking=True)

    def _measure_and_forward(self, batch: torch.Tensor) -> torch.Tensor:
        """First GPU batch (one slice): its peak memory sets the batch size from free memory."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        result = _forward(self.model, batch, self.device, self.amp_dtype)
        torch.cuda.synchronize(self.device)
        per_slice = torch.cuda.max_memory_allocated(self.device) - before
        self.batch = batch_size_for_memory(per_slice, free_memory_bytes(self.device), cap=_MAX_AUTO_BATCH)
        return result

    def _finish(self, block: _Block) -> None:
        """Host: write the block's restored slices (mapped back, checked), out-of-range voxels kept."""
        if block.event is not None:
            block.event.synchronize()
        buffers = self.buffers.get(block.slot, block.count)
        for lo, hi in self._chunks(block.count):
            restored = buffers["network_output"][lo:hi]
            if self.device.type != "cpu":  # on CPU done in _to_host
                self._map_back_and_check(restored)
            destination = self.staging.output_slices[block.start + lo : block.start + hi]
            if "kept_input" not in buffers:
                destination.copy_(restored)
            else:
                # kept + restored * weight with weight in {0, 1} and kept = 0 where weight = 1: an
                # exact select (x * 1 = x, x * 0 = 0, x + 0 = x for finite x), no branch per voxel.
                weight = buffers["restored_weight"][lo:hi]
                torch.addcmul(buffers["kept_input"][lo:hi], restored, weight, out=destination)
        if self.pipelined:
            for _offset, count in block.batches:
                self._report(count)

    def _map_back_and_check(self, restored: torch.Tensor) -> None:
        """In place: ``restored * (upper - lower) + lower`` (the transforms' inverse), then refuse NaN / inf."""
        restored.mul_(self.mapping.span).add_(self.mapping.lower)
        _check_finite(restored)

    def _report(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


def _completion_event(device: torch.device) -> Any:
    """A CUDA event recorded on ``device``'s current stream, after the copies and forward passes
    queued there. ``torch.cuda.Event().record()`` alone records on the *current* device's stream:
    for ``cuda:1`` while the current device is ``cuda:0`` it would complete at once, and the host
    would read the pinned output before the GPU wrote it."""
    with torch.cuda.device(device):
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
    return event


def _release_cached_memory(device: torch.device) -> None:
    """After an out-of-memory batch: hand the caching allocator's free blocks back to the GPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _check_finite(restored: torch.Tensor) -> None:
    """Refuse NaN or infinity in the network's output. A sum propagates both (the cheapest full
    pass); only when it is not finite, min and max tell them from an overflow of the sum."""
    if math.isfinite(float(restored.sum())):
        return
    low, high = (float(v) for v in torch.aminmax(restored))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UserInputError(
            "the network produced NaN or infinite values; if mixed precision was on, run in float32 (--amp none)"
        )


def _forward(model: nn.Module, batch: torch.Tensor, device: torch.device, amp_dtype: torch.dtype | None) -> torch.Tensor:
    """One batch ``(B, H, W)`` through the network in inference mode; returns ``(B, H, W)`` float32
    on ``device`` (the host copy is the caller's, non-blocking on CUDA)."""
    x = batch[:, None].to(device, non_blocking=True)
    with torch.inference_mode(), autocast(device, amp_dtype), _network_threads():
        y = model(x)
    if isinstance(y, (tuple, list)):  # e.g. AMIR's (image, balance loss) if a subclass forgets eval mode
        y = y[0]
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(x.shape):
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise UserInputError(
            f"the network returned {shape} for input {tuple(x.shape)}; a restoration network must map (B, 1, H, W) "
            "to the same shape"
        )
    return y[:, 0].float()
