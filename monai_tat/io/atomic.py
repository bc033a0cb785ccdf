"""Output paths: checks before any work starts, and atomic writes (temporary file, then rename)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from monai_tat.errors import UserInputError

__all__ = ["check_output_path", "atomic_write", "same_file"]


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name the same file or folder (after resolving links and ``..``)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_path(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Validate an output file path before any work is done; return it as a Path.

    Raises:
        UserInputError: the path is one of ``inputs`` (or inside an input folder), is a folder,
            exists without ``overwrite``, or its folder is missing or not writable.
    """
    out = Path(path)
    for source in inputs:
        source = Path(source)
        if same_file(out, source):
            raise UserInputError(f"output {out} would overwrite the input {source}; choose another output path")
        if source.is_dir() and out.resolve().is_relative_to(source.resolve()):
            raise UserInputError(f"output {out} is inside the input folder {source}; choose a path outside it")
    if out.is_dir():
        raise UserInputError(f"output {out} is a folder; give a file name such as {out / 'restored.nii.gz'}")
    if out.exists() and not overwrite:
        raise UserInputError(
            f"output {out} exists; remove it, choose another name or allow overwriting", setting="overwrite"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise UserInputError(f"output folder {parent} does not exist; create it first")
    if not parent.is_dir():
        raise UserInputError(f"output folder {parent} is not a folder; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"output folder {parent} is not writable; choose another output path")
    return out


def atomic_write(path: str | Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``.

    The temporary name keeps the suffix (writers pick the format by it). On any error, or on
    KeyboardInterrupt, the temporary file is removed and nothing appears at ``path``.
    """
    out = check_output_path(path, overwrite=overwrite)
    suffix = "".join(out.suffixes[-2:]) if out.name.endswith(".nii.gz") else out.suffix
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        write(tmp)
        if not tmp.exists():
            raise UserInputError(f"writing {out} produced no file")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
