"""Restore a whole 2D image or 3D volume slice by slice with a 2D network.

This is the one place that turns a volume into network-sized slices and back; the CLI, the MONAI
bundles and the Slicer module call it.

Intensity handling (per task, numbers from :func:`monai_tat.tasks.get_task`; the functions of
:mod:`monai_tat.transforms.model_mapping`, which the transforms use too, applied per block of
slices instead of to the whole volume; the tests check that both give the same values):

- The volume is mapped to the model range [0, 1] and the restored slices are mapped back with the
  exact inverse. CT and PET use one fixed pair of bounds; MRI the 0.5 / 99.5 percentiles of each
  slice along the slicing axis (kept as two small vectors), so a slice's result does not depend on
  the other slices of its file.
- CT and PET have a fixed physical model range (CT [-1024, 3072] HU, PET [0, 20] SUV). The network
  sees its input clipped to [0, 1] as in training, and every voxel whose input lies outside the
  range (metal or bone above 3072 HU, FOV padding below -1024 HU, PET hot spots above 20 SUV) keeps
  its input value in the output: the network cannot restore what it never saw.
- MRI uses per-slice percentiles without clipping: every voxel is restored. A constant slice is
  shifted only, and a nearly empty slice (air with a little tissue) gets a widened span, so no
  voxel reaches the network far above 1 (``meta["restoration"]["intensity"]`` counts both).
- NaN or infinite input voxels are refused with :class:`~monai_tat.errors.UserInputError`.
- Units are checked, not assumed (:mod:`monai_tat.inference.units`): a CT in stored values or a
  PET in Bq/mL is refused, or converted to HU / SUV when its rescale intercept / SUV factor is
  given and given back in its own units. A fixed-range image without a single voxel in the model
  range is refused: its output would be the input, unchanged.

How the work flows (host memory above the input: the output, one staging copy when the slices'
rows are not contiguous in the input, and a few blocks of slices; time: a handful of passes):

- One pass (min and max) checks that every voxel is finite and tells whether any lies outside
  the model range; MRI percentiles are exact (NumPy's), from partitioned float32 copies of a few
  slices at a time.
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

The subpackage's modules, one concern each: :mod:`.restore` (``restore_volume``: checks, task,
units, device, the result), :mod:`.intensity` (the task's map per block of slices), :mod:`.layout`
(slicing axis, slice views, staging, memory order), :mod:`.slice_loop` (batches, pipelining,
out-of-memory halving, progress, cancellation), :mod:`.network` (preparing the network and the one
call into it), :mod:`.threads` (thread counts) and :mod:`.kspace` (the MRI k-space consistency step).
"""

from monai_tat.inference.engine.layout import choose_slice_axis, slices_to_volume, volume_to_slices
from monai_tat.inference.engine.restore import FIXED_RANGE_TASKS, restore_volume
from monai_tat.inference.engine.slice_loop import CancelSignal, ProgressCallback, RestorationCancelled

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
