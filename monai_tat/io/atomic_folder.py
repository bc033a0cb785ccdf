"""Publishing a whole folder atomically (a DICOM series): write beside it, verify, then rename.

The file counterpart is :func:`monai_tat.io.atomic.atomic_write`; this module adds the folder case
without changing that API. A reader (a PACS import, a file watcher, a resumed batch run) sees
either no folder or the complete, verified one: never a series with slices missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from monai_tat.errors import UserInputError
from monai_tat.io.atomic import (
    _disk_full_error,
    _fsync_dir,
    _fsync_file,
    _partial_name,
    check_new_output,
    remove_stale_partials,
    verify_file,
)

__all__ = ["check_output_folder", "atomic_write_folder"]


def check_output_folder(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Validate a folder to be created by :func:`atomic_write_folder`; return it as a Path.

    Raises:
        UserInputError: the folder is one of ``inputs``, inside one or holds one; it is a file;
            it exists without ``overwrite``; or its parent is missing or not writable.
    """
    return check_new_output(path, folder=True, overwrite=overwrite, inputs=inputs)


def atomic_write_folder(
    path: str | Path,
    write: Callable[[Path], None],
    *,
    verify: Callable[[Path], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Fill a temporary folder beside ``path`` with ``write(tmp)``, check it (``verify(tmp)``), rename it to ``path``.

    Every file is flushed to disk and checked by type (:func:`monai_tat.io.atomic.verify_file`),
    then ``verify`` reads what was written and raises when anything is wrong; the folder is then
    never published. Temporaries are named and cleaned as :func:`~monai_tat.io.atomic.atomic_write`'s. With ``overwrite``, an existing folder is moved aside first and deleted only after
    the new one is in place, so a failure at any step leaves the previous folder (or nothing).
    On any error, or on KeyboardInterrupt, the temporary folder is removed.
    """
    out = check_output_folder(path, overwrite=overwrite)
    remove_stale_partials(out.parent if str(out.parent) else Path("."))
    tmp = _partial_name(out, keep_suffix=False)
    old = tmp.with_name(tmp.name + ".replaced")  # matches the temporary pattern: cleaned if left behind
    tmp.mkdir()
    try:
        try:
            write(tmp)
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            if not files:
                raise UserInputError(f"writing {out} produced no file")
            for file in files:
                _fsync_file(file)
                verify_file(file, name=out / file.relative_to(tmp))
            if verify is not None:
                verify(tmp)
        except Exception as err:
            raise _disk_full_error(out, err) or err
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old.exists() and not out.exists():
                os.replace(old, out)  # put the previous folder back
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(out.parent if str(out.parent) else Path("."))
    return out
