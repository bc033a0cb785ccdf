"""The one intensity transform the engine and training use per task (numbers from :mod:`monai_tat.tasks`)."""

from __future__ import annotations

from monai_tat.tasks import get_task
from monai_tat.transforms.intensity import HUWindow, MRINormalize, SUVNormalize

__all__ = ["model_intensity_transform"]


def model_intensity_transform(task: str, *, clip: bool = False) -> HUWindow | SUVNormalize | MRINormalize:
    """Physical units -> the networks' [0, 1] input range, invertible (``t.inverse(t(x)) == x``).

    - ``"ct"``: :class:`HUWindow` over the task's model range (the papers' [-1024, 3072] HU).
    - ``"pet"``: :class:`SUVNormalize` over its model range ([0, 20] SUV).
    - ``"mri"``: :class:`MRINormalize` with the task's percentiles (0.5, 99.5) of each 2D slice
      (``TaskSpec.percentiles_per_slice``); the bounds travel in the output's metadata.

    Args:
        task: a task of :data:`monai_tat.tasks.TASKS`.
        clip: clip to [0, 1] as the papers do before training. The default (False) keeps the map
            exactly invertible for every value, so inference never silently caps a hot PET lesion
            at 20 SUV or metal at 3072 HU (the networks are residual, so out-of-range input passes
            through largely unchanged); values inside the range are identical either way.
    """
    spec = get_task(task)
    if spec.model_range is None:
        return MRINormalize("percentile", percentiles=spec.model_percentiles, clip=clip,
                            per_slice=spec.percentiles_per_slice)
    if spec.units == "HU":
        return HUWindow(spec.model_range, clip=clip)
    return SUVNormalize(spec.model_range, clip=clip)
