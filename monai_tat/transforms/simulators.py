"""The degradation simulator of each task, as the paired-data builder and pipelines use it."""

from __future__ import annotations

from typing import Any

from monai_tat.transforms.degrade_ct import LowDoseCT
from monai_tat.transforms.degrade_mri import KSpaceTruncation
from monai_tat.transforms.degrade_pet import LowCountPET
from monai_tat.transforms.factory import check_task

__all__ = ["simulator_for_task"]


def simulator_for_task(task: str, seed: int | None = None, **kwargs: Any) -> LowDoseCT | LowCountPET | KSpaceTruncation:
    """The papers' degradation for ``task`` with its defaults, overridable by ``kwargs``.

    ``"ct"``: :class:`LowDoseCT` (quarter dose); ``"pet"``: :class:`LowCountPET` (DRF 12);
    ``"mri"``: :class:`KSpaceTruncation` (factor 4, deterministic, ``seed`` unused).
    """
    key = check_task(task)
    if key == "ct":
        return LowDoseCT(seed=seed, **kwargs)
    if key == "pet":
        return LowCountPET(seed=seed, **kwargs)
    return KSpaceTruncation(**kwargs)
