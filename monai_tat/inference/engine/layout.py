"""Memory layout: the slicing axis, ``(N, H, W)`` slice views, and row-contiguous staging.

Slices are read from a *row-contiguous* view of the volume: the input itself when its rows (the
in-plane axis shown as columns) are contiguous, else a staging copy made with torch's blocked 2D
transpose (for a C-ordered ``(I, J, K)`` volume sliced along K, the common case); restored slices
are written into the same view (the output, or the staging copy, which is transposed into the
output at the end).
"""

from __future__ import annotations

import numpy as np
import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.io import axial_axis

__all__ = ["choose_slice_axis", "volume_to_slices", "slices_to_volume", "slice_view", "empty_like_dense",
           "transpose_copy", "SliceStaging"]


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

    A contiguous copy; :func:`slice_view` is the same arrangement as a view.
    """
    return slice_view(x, axis).contiguous()


def slices_to_volume(slices: torch.Tensor, axis: int | None, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`volume_to_slices`."""
    if axis is None:
        out = slices[0].transpose(0, 1)
    else:
        out = slices.transpose(1, 2).movedim(0, axis)
    if out.shape != shape:
        raise RuntimeError(f"slices reassembled to {tuple(out.shape)}, expected {tuple(shape)}")
    return out.contiguous()


def slice_view(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``(N, H, W)`` view of a volume (or ``(1, H, W)`` of a 2D image): rows j, columns i."""
    if axis is None:
        return x.transpose(0, 1)[None]
    return x.movedim(axis, 0).transpose(1, 2)


def numpy_backed_empty(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 tensor allocated by NumPy, which asks the kernel for transparent huge
    pages: filling a large fresh buffer costs a fraction of torch's own allocation (page faults)."""
    return torch.from_numpy(np.empty(shape, dtype=np.float32))


def memory_order(x: torch.Tensor) -> list[int] | None:
    """Dimensions of ``x`` from the outermost to the innermost in memory, if ``x`` is dense
    (a permutation of a contiguous tensor); None otherwise."""
    order = sorted(range(x.ndim), key=lambda d: (-x.stride(d), -x.shape[d]))
    if x.permute(order).is_contiguous():
        return order
    return None


def empty_like_dense(x: torch.Tensor) -> torch.Tensor:
    """A float32 tensor shaped like ``x`` with ``x``'s memory order (C order if ``x`` is not dense).

    Its memory is touched (zeroed) at once: the kernel's huge pages freed by earlier work are most
    likely still available now, while faulting them in at the end of a restoration was measured to
    stall on memory compaction (up to 25 copies' time on a busy machine).
    """
    order = memory_order(x) or list(range(x.ndim))
    storage = numpy_backed_empty(tuple(x.shape[d] for d in order)).zero_()
    return storage.permute([order.index(d) for d in range(x.ndim)])


def transpose_copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst.copy_(src)`` for two same-shape tensors with different memory orders, cache-blocked.

    When both are dense and their memory orders differ by moving one dimension from one end to
    the other (the cases of slicing, below), the copy is a set of 2D transposes, which torch copies
    block by block; anything else uses a plain ``copy_``.
    """
    src_order, dst_order = memory_order(src), memory_order(dst)
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


class SliceStaging:
    """Row-contiguous ``(N, H, W)`` views to read input slices from and write restored slices to.

    When the input's in-plane column axis (W) is innermost in memory, the views are the input and
    the output themselves. Otherwise the input is copied once into a staging tensor with W innermost
    (a blocked transposition); restored slices overwrite the consumed input slices there, and
    :meth:`finish` transposes the staging tensor into the output.
    """

    def __init__(self, data: torch.Tensor, out: torch.Tensor, axis: int | None) -> None:
        self.out, self.axis = out, axis
        slices = slice_view(data, axis)
        self.staged: torch.Tensor | None = None
        if slices.stride(-1) == 1:
            self.input_slices, self.output_slices = slices, slice_view(out, axis)
            return
        w_dim = 0  # W is the first remaining (i) axis: dim 0, or dim 1 when slicing along 0
        if axis == 0:
            w_dim = 1
        order = [d for d in (memory_order(data) or list(range(data.ndim))) if d != w_dim] + [w_dim]
        storage = numpy_backed_empty(tuple(data.shape[d] for d in order))
        staged = storage.permute([order.index(d) for d in range(data.ndim)])
        transpose_copy(staged, data)
        self.staged = staged
        self.input_slices = self.output_slices = slice_view(staged, axis)

    @property
    def total(self) -> int:
        return int(self.input_slices.shape[0])

    def finish(self) -> None:
        """Move the restored slices into the output (when they were staged)."""
        if self.staged is not None:
            transpose_copy(self.out, self.staged)
            self.staged = None
