"""The one mapping between physical units and the networks' [0, 1] model range, and its inverse.

``model = (x - lower) / (upper - lower)`` and ``x = model * (upper - lower) + lower``. The bounds
come from the task registry (:mod:`monai_tat.tasks`):

- a fixed physical range (CT [-1024, 3072] HU, PET [0, 20] SUV): one pair for every image;
- percentiles (MRI 0.5 / 99.5): with ``TaskSpec.percentiles_per_slice`` one pair **per 2D slice**
  along the axis the network slices, so a slice is mapped (and restored) the same whether it comes
  alone, in a slab or in its whole volume; otherwise one pair for the whole image.

Per-slice percentiles need care where a slice holds almost nothing (see
:func:`slice_percentile_bounds`): a constant slice is shifted only, and a slice whose percentile
spread is tiny next to its own full range (nearly all air with a little tissue) gets its span
widened to :data:`MIN_SPREAD` of that range, so that no voxel lands far above 1. Both rules use the
slice alone, so they keep the mapping independent of the other slices.

Everyone maps with these functions: the intensity transforms (:class:`~monai_tat.transforms.MRINormalize`,
:class:`~monai_tat.transforms.TaskIntensityd`), the restoration engine (block by block, with the
per-slice bounds as small vectors) and through it the bundles' inferer and the confidence map. The
arithmetic is float32 (float64 stays float64) with float32 bounds, so every caller gets the same
values to the bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import torch

from monai_tat.tasks import get_task

__all__ = [
    "MIN_SPREAD",
    "ModelBounds",
    "exact_percentiles",
    "fixed_bounds",
    "percentile_bounds",
    "slice_percentile_bounds",
    "task_bounds",
    "to_model",
    "from_model",
    "channel_first_slice_axis",
]

#: A slice's percentile spread ``upper - lower`` is at least this share of its full range
#: ``max - min`` (per-slice mapping): a nearly empty slice with a little bright tissue then maps
#: that tissue to at most 1 / MIN_SPREAD instead of hundreds. Real MRI slices have a spread of 0.4
#: to 0.96 of their range and are not touched.
MIN_SPREAD = 0.2

#: Bytes of float32 slices copied at a time to compute per-slice percentiles.
_CHUNK_BYTES = 2**20

Scalar = Union[float, torch.Tensor]


@dataclass(frozen=True)
class ModelBounds:
    """The physical values mapped to 0 (``lower``) and 1 (``upper``).

    Attributes:
        lower, upper: float64 arrays of shape ``(1,)`` (one pair for the whole image) or ``(N,)``
            (one pair per slice along ``axis``).
        axis: the dimension of the image along which the ``N`` slices lie; None for one pair.
        widened: slices whose span was widened to :data:`MIN_SPREAD` of their range.
        constant: constant slices (shifted only, span 1).
    """

    lower: np.ndarray
    upper: np.ndarray
    axis: Optional[int] = None
    widened: int = 0
    constant: int = 0

    @property
    def per_slice(self) -> bool:
        return self.axis is not None

    @property
    def slices(self) -> int:
        return int(self.lower.shape[0])

    def scalars(self) -> tuple[float, float]:
        """``(lower, upper)`` of a single pair; ValueError for per-slice bounds."""
        if self.per_slice:
            raise ValueError("per-slice bounds have no single (lower, upper) pair")
        return float(self.lower[0]), float(self.upper[0])

    def for_slices(self, start: int, stop: int, dtype: torch.dtype = torch.float32) -> tuple[Scalar, Scalar]:
        """``(lower, span)`` for a stack ``(stop - start, H, W)`` of slices ``[start, stop)``: Python
        floats for a single pair, else ``(n, 1, 1)`` tensors of ``dtype``."""
        if not self.per_slice:
            lower, upper = self.scalars()
            return lower, upper - lower
        lower = torch.from_numpy(self.lower[start:stop]).to(dtype).view(-1, 1, 1)
        span = torch.from_numpy(self.upper[start:stop] - self.lower[start:stop]).to(dtype).view(-1, 1, 1)
        return lower, span

    def broadcast(self, image: torch.Tensor) -> tuple[Scalar, Scalar]:
        """``(lower, span)`` broadcastable against ``image`` (whose dimension ``axis`` holds the slices)."""
        if not self.per_slice:
            return self.for_slices(0, 1)
        axis = self.axis % image.ndim
        if image.shape[axis] != self.slices:
            raise ValueError(f"{self.slices} per-slice bounds for {image.shape[axis]} slices along axis {axis}")
        lower, span = self.for_slices(0, self.slices, image.dtype if image.is_floating_point() else torch.float32)
        shape = [1] * image.ndim
        shape[axis] = self.slices
        return lower.view(shape).to(image.device), span.view(shape).to(image.device)

    def record(self) -> dict[str, Any]:
        """JSON-friendly record (kept in a MetaTensor's ``applied_operations``)."""
        if not self.per_slice:
            lower, upper = self.scalars()
            return {"lower": lower, "upper": upper}
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist(), "axis": int(self.axis)}

    @classmethod
    def from_record(cls, info: Mapping[str, Any]) -> ModelBounds:
        """Inverse of :meth:`record` (also reads the plain ``{"lower": float, "upper": float}``)."""
        lower = np.atleast_1d(np.asarray(info["lower"], dtype=np.float64))
        upper = np.atleast_1d(np.asarray(info["upper"], dtype=np.float64))
        axis = info.get("axis")
        return cls(lower, upper, None if axis is None else int(axis))

    def without_channel(self) -> ModelBounds:
        """The same bounds for the image without its leading channel dimension."""
        if not self.per_slice:
            return self
        return ModelBounds(self.lower, self.upper, self.axis - 1, self.widened, self.constant)


def to_model(image: torch.Tensor, bounds: ModelBounds, out: torch.Tensor | None = None,
             slices: tuple[int, int] | None = None) -> torch.Tensor:
    """``(image - lower) / (upper - lower)``.

    Args:
        image: physical values, float32 (or float64); the whole image bounds were computed for, or
            with ``slices=(start, stop)`` a ``(stop - start, H, W)`` stack of its slices.
        out: optional output of ``image``'s shape (may be ``image`` itself).
    """
    lower, span = bounds.for_slices(*slices, image.dtype) if slices is not None else bounds.broadcast(image)
    result = torch.sub(image, lower, out=out) if out is not None else torch.sub(image, lower)
    return result.div_(span)


def from_model(model: torch.Tensor, bounds: ModelBounds, out: torch.Tensor | None = None,
               slices: tuple[int, int] | None = None) -> torch.Tensor:
    """``model * (upper - lower) + lower``: the exact inverse of :func:`to_model` (arguments alike)."""
    lower, span = bounds.for_slices(*slices, model.dtype) if slices is not None else bounds.broadcast(model)
    result = torch.mul(model, span, out=out) if out is not None else torch.mul(model, span)
    return result.add_(lower)


def fixed_bounds(lower: float, upper: float) -> ModelBounds:
    return ModelBounds(np.array([lower], dtype=np.float64), np.array([upper], dtype=np.float64))


def _rows_percentiles(rows: np.ndarray, percentiles: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of a float32 ``(n, m)`` array (partitioned in place): NumPy's "linear" percentiles,
    exactly as ``numpy.percentile(rows.astype(float64), percentiles, axis=1)``, and the rows' min
    and max. Returns ``(percentiles (n, len(percentiles)), min (n,), max (n,))`` in float64."""
    m = rows.shape[1]
    quantiles = np.asarray(percentiles, dtype=np.float64) / 100
    virtual = (m - 1) * quantiles
    below = np.floor(virtual)
    above_bounds = virtual >= m - 1
    prev_index = np.where(above_bounds, m - 1, below).astype(np.intp)
    next_index = np.where(above_bounds, m - 1, below + 1).astype(np.intp)
    rows.partition(np.unique(np.concatenate(([0, m - 1], prev_index, next_index))), axis=1)
    a = rows[:, prev_index].astype(np.float64)
    b = rows[:, next_index].astype(np.float64)
    gamma = virtual - np.where(above_bounds, -1, below)
    diff = b - a
    result = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)
    return result, rows[:, 0].astype(np.float64), rows[:, m - 1].astype(np.float64)


def exact_percentiles(data: torch.Tensor | np.ndarray, percentiles: Sequence[float]) -> tuple[float, float]:
    """``numpy.percentile(data.astype(float64), percentiles)`` exactly, from one float32 copy."""
    values = np.array(torch.as_tensor(data).detach().cpu().numpy(), dtype=np.float32, order="K").reshape(1, -1)
    result, _, _ = _rows_percentiles(values, percentiles)
    return float(result[0, 0]), float(result[0, 1])


def _is_constant(lower: np.ndarray | float, upper: np.ndarray | float) -> np.ndarray:
    return np.asarray(upper) - np.asarray(lower) <= 1e-12 * np.maximum(1.0, np.abs(lower))


def percentile_bounds(image: torch.Tensor, percentiles: Sequence[float]) -> ModelBounds:
    """One pair for the whole image: its ``percentiles``; a constant image is shifted only (span 1)."""
    lower, upper = exact_percentiles(image, percentiles)
    constant = bool(_is_constant(lower, upper))
    if constant:
        upper = lower + 1.0
    return ModelBounds(np.array([lower]), np.array([upper]), None, 0, int(constant))


def slice_percentile_bounds(image: torch.Tensor, percentiles: Sequence[float], axis: int | None) -> ModelBounds:
    """One pair per slice along ``axis`` (None: the whole image is one slice, one pair).

    Each slice's ``percentiles``, then two robust rules that look at that slice only:

    - a constant slice (``max - min`` at rounding level) is shifted only: ``upper = lower + 1``;
    - a spread ``upper - lower`` below :data:`MIN_SPREAD` of the slice's ``max - min`` (a slice of
      air with a little tissue, whose upper percentile is the noise) is widened to that share:
      ``upper = lower + MIN_SPREAD * (max - min)``.

    Memory: float32 copies of about 16 MiB of slices at a time.
    """
    data = torch.as_tensor(image).detach().cpu()
    stack = data.reshape(1, -1) if axis is None else data.movedim(axis, 0).reshape(data.shape[axis], -1)
    n, m = stack.shape
    step = max(1, _CHUNK_BYTES // max(1, 4 * m))
    lower, upper = np.empty(n), np.empty(n)
    low_value, high_value = np.empty(n), np.empty(n)
    for start in range(0, n, step):
        rows = np.array(stack[start : start + step].numpy(), dtype=np.float32)  # a copy, partitioned in place
        result, low_value[start : start + step], high_value[start : start + step] = _rows_percentiles(rows, percentiles)
        lower[start : start + step], upper[start : start + step] = result[:, 0], result[:, 1]
    full = high_value - low_value
    constant = _is_constant(low_value, high_value)
    narrow = ~constant & (upper - lower < MIN_SPREAD * full)
    upper = np.where(narrow, lower + MIN_SPREAD * full, upper)
    upper = np.where(constant, lower + 1.0, upper)
    return ModelBounds(lower, upper, None if axis is None else axis % data.ndim, int(narrow.sum()), int(constant.sum()))


def task_bounds(task: str, image: torch.Tensor, axis: int | None) -> ModelBounds:
    """The bounds of ``task`` for ``image`` (physical units) sliced along ``axis`` (None: 2D, one slice)."""
    spec = get_task(task)
    if spec.model_range is not None:
        return fixed_bounds(*spec.model_range)
    if spec.percentiles_per_slice:
        return slice_percentile_bounds(image, spec.model_percentiles, axis)
    return percentile_bounds(image, spec.model_percentiles)


def channel_first_slice_axis(image: torch.Tensor) -> int | None:
    """The slice axis of a channel-first image ``(C, *spatial)``: for three spatial dimensions the
    axial axis of its affine (the engine's default slicing axis; the last one without an affine),
    plus one for the channel; None for a 2D image (one slice)."""
    if image.ndim < 4:
        return None
    from monai_tat.io.geometry import axial_axis

    affine = getattr(image, "affine", None)
    return 1 + axial_axis(None if affine is None else np.asarray(affine.cpu()), 3)
