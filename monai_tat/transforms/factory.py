"""The one intensity transform the engine and training use per task."""

from __future__ import annotations

from monai_tat.errors import UserInputError
from monai_tat.transforms.intensity import HUWindow, MRINormalize, SUVNormalize

__all__ = ["TASKS", "check_task", "model_intensity_transform"]

#: The restoration tasks of the papers: low-dose CT, low-count PET, 4x MRI super-resolution.
TASKS: tuple[str, ...] = ("ct", "pet", "mri")


def check_task(task: str) -> str:
    """Return ``task`` lower-cased, or raise :class:`UserInputError` if it is not one of :data:`TASKS`."""
    key = str(task).lower()
    if key not in TASKS:
        raise UserInputError(f"unknown task {task!r}; use one of {', '.join(TASKS)}.")
    return key


def model_intensity_transform(task: str, *, clip: bool = False) -> HUWindow | SUVNormalize | MRINormalize:
    """Physical units -> the networks' [0, 1] input range, invertible (``t.inverse(t(x)) == x``).

    - ``"ct"``: :class:`HUWindow` over the papers' model range [-1024, 3072] HU.
    - ``"pet"``: :class:`SUVNormalize` over [0, 20] SUV.
    - ``"mri"``: :class:`MRINormalize` with per-volume percentiles (0.5, 99.5); the statistics
      travel in the output's metadata.

    Args:
        task: one of :data:`TASKS`.
        clip: clip to [0, 1] as the papers do before training. The default (False) keeps the map
            exactly invertible for every value, so inference never silently caps a hot PET lesion
            at 20 SUV or metal at 3072 HU (the networks are residual, so out-of-range input passes
            through largely unchanged); values inside the range are identical either way.
    """
    key = check_task(task)
    if key == "ct":
        return HUWindow("model", clip=clip)
    if key == "pet":
        return SUVNormalize((0.0, 20.0), clip=clip)
    return MRINormalize("percentile", percentiles=(0.5, 99.5), clip=clip)
