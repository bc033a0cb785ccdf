"""The task's intensity mapping applied to blocks of slices: bounds for the volume, map and inverse.

The bounds and the arithmetic are :mod:`monai_tat.transforms.model_mapping`'s (the transforms use
the same functions): CT and PET one fixed pair, MRI one pair per slice along the slicing axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from monai_tat.tasks import get_task
from monai_tat.transforms.model_mapping import ModelBounds, from_model, task_bounds, to_model

__all__ = ["IntensityMap"]


@dataclass(frozen=True)
class IntensityMap:
    """The task's bounds for this volume (:func:`monai_tat.transforms.model_mapping.task_bounds`:
    fixed, or MRI percentiles per slice along the slicing axis) and the map to the model range and
    back, applied to blocks of slices.

    ``clip``: fixed-range task (input clipped to [0, 1], out-of-range voxels kept). ``any_outside``:
    some voxel of this volume lies outside [0, 1] after the map (else no mask is needed).
    """

    bounds: ModelBounds
    clip: bool
    any_outside: bool

    @classmethod
    def for_volume(cls, task: str, data: torch.Tensor, value_range: tuple[float, float], axis: int | None) -> IntensityMap:
        spec = get_task(task)
        bounds = task_bounds(task, data, axis)
        if not spec.fixed_range:
            return cls(bounds, False, True)
        # The map is monotonic in float32 too, so the extremes tell whether any voxel leaves [0, 1].
        low, high = to_model(torch.tensor(value_range, dtype=torch.float32), bounds).tolist()
        return cls(bounds, True, low < 0.0 or high > 1.0)

    @property
    def lower(self) -> float:
        """The lower bound of a fixed range."""
        return self.bounds.scalars()[0]

    @property
    def upper(self) -> float:
        """The upper bound of a fixed range."""
        return self.bounds.scalars()[1]

    def to_model(self, x: torch.Tensor, start: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Slices ``x = slices[start:start + len(x)]`` mapped to the model range, into ``out`` (same shape) or a new tensor."""
        return to_model(x, self.bounds, out=out, slices=(start, start + x.shape[0]))

    def to_physical_(self, y: torch.Tensor, start: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Model-range slices ``y`` (slices ``[start, start + len(y))``) back to physical values, into ``out`` or ``y``."""
        return from_model(y, self.bounds, out=y if out is None else out, slices=(start, start + y.shape[0]))

    def record(self) -> dict[str, Any]:
        """What ``meta["restoration"]["intensity"]`` says about the mapping."""
        if not self.bounds.per_slice:
            lower, upper = self.bounds.scalars()
            return {"bounds": "fixed" if self.clip else "percentiles", "lower": lower, "upper": upper}
        return {"bounds": "percentiles per slice", "slices": self.bounds.slices,
                "widened_slices": self.bounds.widened, "constant_slices": self.bounds.constant}
