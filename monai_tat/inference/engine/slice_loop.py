"""The slice loop: blocks of slices mapped, batched through the network, mapped back and written.

Blocks of slices are mapped, clipped and masked in small reusable buffers, a cache-sized chunk at a
time; restored values are mapped back and written block by block (the kept voxels through an exact
arithmetic select, no per-voxel branch). On CUDA the buffers are pinned, batches go to the GPU with
non-blocking copies and come back the same way, and the next block is prepared while the GPU runs
the current one (double buffering). Without a batch size, the first slice's peak GPU memory and
``torch.cuda.mem_get_info`` set it; a batch that runs out of memory is halved. Progress is
reported and cancellation checked between batches.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn

from monai_tat.errors import RestorationCancelled, UserInputError
from monai_tat.inference.devices import batch_size_for_memory, default_batch_size, free_memory_bytes, is_out_of_memory
from monai_tat.inference.engine.intensity import IntensityMap
from monai_tat.inference.engine.layout import SliceStaging
from monai_tat.inference.engine.network import forward

__all__ = ["SliceLoop", "RestorationCancelled", "ProgressCallback", "CancelSignal", "is_cancelled"]

ProgressCallback = Callable[[int, int], None]
CancelSignal = Union[threading.Event, Callable[[], bool], None]

#: A block of slices (the unit of staging and of the CPU's elementwise work) holds at least this
#: many bytes (or 1/16 of the volume if less), so that small batches still cost few Python steps.
_MIN_BLOCK_BYTES = 4 * 2**20
#: The chains of elementwise passes on the host run over this many bytes of slices at a time.
_CHUNK_BYTES = 2 * 2**20
#: Most slices per batch chosen from free GPU memory (more gives no speed).
_MAX_AUTO_BATCH = 32


def is_cancelled(cancel: CancelSignal) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def use_pipeline(device: torch.device) -> bool:
    """Overlap host work with the device (double-buffered blocks): on CUDA. Tests force it on CPU."""
    return device.type == "cuda"


@dataclass
class Block:
    """Slices ``[start, start + count)`` staged in buffer set ``slot``."""

    start: int
    count: int
    slot: int
    batches: list[tuple[int, int]] = field(default_factory=list)  # (first slice in block, count)
    event: Any = None


class Buffers:
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


class SliceLoop:
    """Run ``network`` over the staged slices block by block (see the module docstring)."""

    def __init__(
        self,
        network: nn.Module,
        mapping: IntensityMap,
        staging: SliceStaging,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        batch_size: int | None,
        progress: ProgressCallback | None,
        cancel: CancelSignal,
    ) -> None:
        self.network, self.mapping, self.staging = network, mapping, staging
        self.device, self.amp_dtype = device, amp_dtype
        self.progress, self.cancel = progress, cancel
        self.total = staging.total
        self.slice_shape = tuple(staging.input_slices.shape[1:])
        self.pipelined = use_pipeline(device)
        # On a GPU without a given batch size, the first batch (one slice) measures the memory.
        self.measure_batch = batch_size is None and device.type == "cuda"
        self.batch = batch_size or default_batch_size(device)
        self.buffers = Buffers(
            self.slice_shape, pinned=device.type == "cuda", with_mask=mapping.clip and mapping.any_outside
        )
        self.done = 0

    def run(self) -> None:
        was_training = self.network.training
        self.network.to(self.device).eval()
        if self.progress is not None:
            self.progress(0, self.total)
        try:
            pending: Block | None = None
            start, slot = 0, 0
            while start < self.total:
                block = Block(start, min(self._block_size(), self.total - start), slot)
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
            if is_cancelled(self.cancel):
                raise RestorationCancelled(
                    f"cancelled after all {self.total} slices, before the result was returned"
                )
        finally:
            self.network.train(was_training)

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

    def _stage(self, block: Block) -> None:
        """Host: model-range input of the block, clipped for fixed-range tasks, and where it was clipped."""
        buffers = self.buffers.get(block.slot, block.count)
        for lo, hi in self._chunks(block.count):
            raw = self.staging.input_slices[block.start + lo : block.start + hi]
            model_input = buffers["model_input"][lo:hi]
            if "kept_input" not in buffers:  # MRI, or no voxel outside the range: nothing to clip or keep
                self.mapping.to_model(raw, block.start + lo, out=model_input)
                continue
            unclipped = self.mapping.to_model(raw, block.start + lo, out=buffers["restored_weight"][lo:hi])
            torch.clamp(unclipped, 0.0, 1.0, out=model_input)
            # unclipped - clipped is non-zero exactly where clipping acted: outside = 1.0 there, else 0.0;
            # kept input = input * outside (the input's value, or 0) and restored weight = 1 - outside.
            outside = unclipped.sub_(model_input).abs_().sign_()
            torch.mul(raw, outside, out=buffers["kept_input"][lo:hi])
            outside.neg_().add_(1.0)

    def _run(self, block: Block) -> None:
        """Network over the block in batches (retrying smaller on out-of-memory); outputs to host."""
        buffers = self.buffers.get(block.slot, block.count)
        offset = 0
        while offset < block.count:
            if is_cancelled(self.cancel):
                raise RestorationCancelled(f"cancelled after {self.done} of {self.total} slices")
            count = min(self.batch, block.count - offset)
            batch = buffers["model_input"][offset : offset + count]
            try:
                if self.measure_batch:
                    result = self._measure_and_forward(batch)
                else:
                    result = forward(self.network, batch, self.device, self.amp_dtype)
                    self._to_host(result, buffers["network_output"][offset : offset + count], block.start + offset)
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
                release_cached_memory(self.device)
                continue
            if self.measure_batch:
                self._to_host(result, buffers["network_output"][offset : offset + count], block.start + offset)
                self.measure_batch = False
            block.batches.append((offset, count))
            offset += count
            if not self.pipelined:
                self._report(count)
        if self.pipelined and self.device.type == "cuda":
            block.event = completion_event(self.device)

    def _to_host(self, result: torch.Tensor, destination: torch.Tensor, start: int) -> None:
        """Network output (slices from ``start``) into the host buffer: on CPU mapped back and
        checked at once (the scaling replaces a copy), from CUDA a non-blocking copy (mapped back in
        :meth:`_finish`)."""
        if result.device.type == "cpu":  # map back while it is in cache
            self.mapping.to_physical_(result, start, out=destination)
            check_finite(destination)
        else:
            destination.copy_(result, non_blocking=True)

    def _measure_and_forward(self, batch: torch.Tensor) -> torch.Tensor:
        """First GPU batch (one slice): its peak memory sets the batch size from free memory."""
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        result = forward(self.network, batch, self.device, self.amp_dtype)
        torch.cuda.synchronize(self.device)
        per_slice = torch.cuda.max_memory_allocated(self.device) - before
        self.batch = batch_size_for_memory(per_slice, free_memory_bytes(self.device), cap=_MAX_AUTO_BATCH)
        return result

    def _finish(self, block: Block) -> None:
        """Host: write the block's restored slices (mapped back, checked), out-of-range voxels kept."""
        if block.event is not None:
            block.event.synchronize()
        buffers = self.buffers.get(block.slot, block.count)
        for lo, hi in self._chunks(block.count):
            restored = buffers["network_output"][lo:hi]
            if self.device.type != "cpu":  # on CPU done in _to_host
                self._map_back_and_check(restored, block.start + lo)
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

    def _map_back_and_check(self, restored: torch.Tensor, start: int) -> None:
        """In place: ``restored * (upper - lower) + lower`` (the transforms' inverse), then refuse NaN / inf."""
        self.mapping.to_physical_(restored, start)
        check_finite(restored)

    def _report(self, count: int) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total)


def completion_event(device: torch.device) -> Any:
    """A CUDA event recorded on ``device``'s current stream, after the copies and forward passes
    queued there. ``torch.cuda.Event().record()`` alone records on the *current* device's stream:
    for ``cuda:1`` while the current device is ``cuda:0`` it would complete at once, and the host
    would read the pinned output before the GPU wrote it."""
    with torch.cuda.device(device):
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))
    return event


def release_cached_memory(device: torch.device) -> None:
    """After an out-of-memory batch: hand the caching allocator's free blocks back to the GPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_finite(restored: torch.Tensor) -> None:
    """Refuse NaN or infinity in the network's output. A sum propagates both (the cheapest full
    pass); only when it is not finite, min and max tell them from an overflow of the sum."""
    if math.isfinite(float(restored.sum())):
        return
    low, high = (float(v) for v in torch.aminmax(restored))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UserInputError(
            "the network produced NaN or infinite values; if mixed precision was on, run in float32 (--amp none)"
        )
