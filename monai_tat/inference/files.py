"""File to file restoration: read, restore, write atomically (what the CLI and Slicer's worker run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monai.data import MetaTensor

from monai_tat.io import check_output_path, image_suffix, read_volume, write_volume
from monai_tat.io.volume import OUTPUT_SUFFIXES
from monai_tat.errors import UserInputError
from monai_tat.inference.engine import restore_volume

__all__ = ["restore_file", "check_restore_paths"]


def check_restore_paths(input_path: str | Path, output_path: str | Path, *, overwrite: bool = False) -> Path:
    """Refuse an output that is the input, has an unsupported suffix, exists or cannot be written.

    Called before any computation so that a mistake costs nothing.
    """
    out = Path(output_path)
    if image_suffix(out) not in OUTPUT_SUFFIXES:
        raise UserInputError(f"output {out} must end in one of {', '.join(OUTPUT_SUFFIXES)}")
    return check_output_path(out, overwrite=overwrite, inputs=[input_path])


def restore_file(
    input_path: str | Path, output_path: str | Path, network: Any, *, overwrite: bool = False, **kwargs: Any
) -> MetaTensor:
    """Restore ``input_path`` into ``output_path`` (NIfTI / NRRD / MHA) and return the restored image.

    ``kwargs`` go to :func:`~monai_tat.inference.restore_volume` (task, device, batch_size, axis,
    progress, cancel, amp). Nothing is written when anything fails or is cancelled.
    """
    check_restore_paths(input_path, output_path, overwrite=overwrite)
    image = read_volume(input_path)
    restored = restore_volume(image, network, **kwargs)
    write_volume(restored, output_path, overwrite=overwrite)
    return restored
