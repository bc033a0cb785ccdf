"""Where an interrupted training run resumes: the full checkpoints a bundle's ``train.json`` saves."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["latest_checkpoint", "CHECKPOINT_PATTERN"]

#: File names of the full training checkpoints (network, EMA, optimiser, schedule, loss, trainer).
CHECKPOINT_PATTERN = "checkpoint_*.pt"


def latest_checkpoint(folder: str | os.PathLike | None) -> str | None:
    """The most recent full training checkpoint in ``folder`` (``checkpoint_*.pt``), or None.

    A bundle's ``train.json`` resumes from it, so rerunning an interrupted training continues it.
    """
    if not folder or not Path(folder).is_dir():
        return None
    found = sorted(Path(folder).glob(CHECKPOINT_PATTERN), key=lambda p: p.stat().st_mtime)
    return str(found[-1]) if found else None
