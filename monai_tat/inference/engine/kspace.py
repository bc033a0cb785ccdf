"""The MRI k-space consistency step applied to a restored volume (glue to :mod:`~monai_tat.inference.kspace_consistency`)."""

from __future__ import annotations

from typing import Any

import torch

from monai_tat.inference.engine.layout import slice_view
from monai_tat.inference.kspace_consistency import SLICES_PER_STEP, detect_truncation_band, enforce_magnitude_consistency
from monai_tat.tasks import get_task

__all__ = ["kspace_consistency_step"]


def kspace_consistency_step(task: str, data: torch.Tensor, restored: torch.Tensor, axis: int | None,
                            value_range: tuple[float, float], mode: str, factor: float | None) -> dict[str, Any]:
    """Apply the MRI k-space consistency step to ``restored`` in place when ``mode`` asks for it.

    Returns the record kept in ``meta["restoration"]["kspace_consistency"]``: whether it was
    applied, and the band or the reason it was not.
    """
    default_factor = get_task(task).kspace_factor
    if default_factor is None or mode == "off":
        return {"mode": mode, "applied": False, "reason": "off" if mode == "off" else f"not used for {task}"}
    factor = float(factor if factor is not None else default_factor)
    if mode == "auto" and value_range[0] < 0.0:
        return {"mode": mode, "applied": False, "reason": "the input has negative values: not a magnitude image"}
    input_slices, output_slices = slice_view(data, axis), slice_view(restored, axis)
    band = detect_truncation_band(input_slices, factor, force=mode == "on")
    if band is None:
        return {"mode": mode, "applied": False, "factor": factor,
                "reason": f"the input is not a {factor:g}x k-space-truncated image"}
    for start in range(0, input_slices.shape[0], SLICES_PER_STEP):
        stop = start + SLICES_PER_STEP
        output_slices[start:stop] = enforce_magnitude_consistency(output_slices[start:stop], input_slices[start:stop], band)
    return {"mode": mode, "applied": True, "factor": factor, "band": band.as_dict()}
