"""Output paths: checks before any work starts, and verified atomic writes (temporary, check, rename).

Every file the package writes goes through :func:`atomic_write`: the writer fills a hidden temporary
file beside the output, the temporary is flushed to disk and read back (NIfTI: the header's data
size against the bytes on disk, compressed files decompressed to the end; NRRD / MHA: read by
SimpleITK; PNG, JSON, CSV, DICOM, checkpoints: parsed), and only then renamed onto the output name.
A folder of files (a dataset, a DICOM series) is published the same way by :func:`atomic_publish_dir`.
A full disk, a writer that silently wrote too little, an interruption or a crash therefore never
leaves a file under the output name; temporaries left by a killed process are removed by the next
write into the same folder.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import struct
import time
import uuid
import zipfile
from io import BytesIO
from collections.abc import Callable, Iterable
from pathlib import Path

from monai_tat.errors import UserInputError

__all__ = [
    "check_output_path",
    "atomic_write",
    "atomic_publish_dir",
    "same_file",
    "verify_file",
    "remove_stale_partials",
    "IncompleteFileError",
    "DISK_FULL_BYTES",
    "quick_image_check",
    "check_writable_folder",
]

logger = logging.getLogger(__name__)

#: Free space (bytes) below which a failed write is reported as a full disk.
DISK_FULL_BYTES = 1 << 20
#: Temporaries of a process on another machine (shared folder) count as stale after this many seconds.
FOREIGN_STALE_SECONDS = 24 * 3600
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
# ".<output name>.<host>-<pid>-<token>.partial[<suffix>]"; the host and pid say whose it is.
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-[0-9a-f]{8}\.partial(?:\.[A-Za-z0-9.]+)?$")
# Temporaries of older versions of this package: ".<output name>.<token>.partial[<suffix>]".
_LEGACY_PARTIAL = re.compile(r"^\..+\.[0-9a-f]{8}\.partial(?:\.[A-Za-z0-9.]+)?$")
_LEGACY_STALE_SECONDS = 3600


class IncompleteFileError(UserInputError):
    """A file just written is shorter than its own header says, or does not parse: not published."""


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when two paths name the same file or folder (after resolving links and ``..``)."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _suffix(path: Path) -> str:
    """The file-type suffix, treating ``.nii.gz`` as one (lower case)."""
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _partial_name(out: Path, keep_suffix: bool = True) -> Path:
    suffix = _suffix(out) if keep_suffix else ""
    return out.with_name(f".{out.name}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}")


def check_output_path(
    path: str | Path, *, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """Validate an output file path before any work is done; return it as a Path.

    Besides the permission bits, a file is created in (and removed from) the output folder, so a
    read-only mount, a pseudo file system or a full quota is refused here rather than after the work.

    Raises:
        UserInputError: the path is one of ``inputs`` (or inside an input folder), is a folder,
            exists without ``overwrite``, or its folder is missing or not writable.
    """
    out = check_new_output(path, folder=False, overwrite=overwrite, inputs=inputs)
    _probe_writable(out.parent if str(out.parent) else Path("."), out)
    return out


def check_new_output(
    path: str | Path, *, folder: bool, overwrite: bool = False, inputs: Iterable[str | Path] = ()
) -> Path:
    """The checks shared by an output file (``folder=False``) and an output folder to be created.

    Raises:
        UserInputError: the output is one of ``inputs``, inside an input folder or (a folder) holds
            an input; it is of the other kind (file / folder); it exists without ``overwrite``; or
            its parent folder is missing, not a folder or not writable.
    """
    out = Path(path)
    noun = "output folder" if folder else "output"
    for source in inputs:
        source = Path(source)
        if same_file(out, source):
            raise UserInputError(f"{noun} {out} would overwrite the input {source}; choose another output path")
        if source.is_dir() and out.resolve().is_relative_to(source.resolve()):
            raise UserInputError(f"{noun} {out} is inside the input folder {source}; choose a path outside it")
        if folder and source.resolve().is_relative_to(out.resolve()):
            raise UserInputError(f"{noun} {out} holds the input {source}; choose another output folder")
    if out.exists() and out.is_dir() != folder:
        wanted = "a folder name for the DICOM series" if folder else f"a file name such as {out / 'restored.nii.gz'}"
        raise UserInputError(f"output {out} is a {'file' if folder else 'folder'}; give {wanted}")
    if out.exists() and not overwrite:
        raise UserInputError(
            f"{noun} {out} exists; remove it, choose another name or allow overwriting", setting="overwrite"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise UserInputError(f"folder {parent} (where {out.name} would be created) does not exist; create it first")
    if not parent.is_dir():
        raise UserInputError(f"{parent} (where {out.name} would be created) is not a folder; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"folder {parent} is not writable; choose another output path")
    return out


def check_writable_folder(folder: str | Path, *, create: bool = True) -> Path:
    """Make sure files can be written into ``folder`` (created when missing and ``create``), before any work.

    Raises:
        UserInputError: the path is a file, cannot be created, or refuses a new file (permissions,
            read-only or pseudo file system, full disk).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserInputError(f"output folder {folder} is a file; choose a folder")
    if not folder.exists():
        if not create:
            raise UserInputError(f"output folder {folder} does not exist; create it first")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserInputError(f"cannot create the output folder {folder} ({err.strerror}); choose another") from err
    _probe_writable(folder, folder / "output")
    return folder


def _probe_writable(parent: Path, out: Path) -> None:
    """Create and remove a temporary file in ``parent``: the only reliable writability test."""
    probe = _partial_name(out, keep_suffix=False)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        if err.errno in _DISK_FULL_ERRNOS:
            raise UserInputError(f"disk full: no space left in {parent} for {out.name}; free space or choose "
                                 "another output folder") from err
        raise UserInputError(f"output folder {parent} is not writable ({err.strerror}); choose another output "
                             "path") from err
    os.close(fd)
    probe.unlink(missing_ok=True)


def atomic_write(
    path: str | Path,
    write: Callable[[Path], None],
    *,
    overwrite: bool = False,
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, verify it, then rename it onto ``path``.

    The temporary name keeps the suffix (writers pick the format by it). After ``write`` returns,
    the temporary is flushed to disk (fsync) and checked by :func:`verify_file` (chosen by the
    suffix), then by ``verify(tmp)`` when given. On any error, on KeyboardInterrupt or SIGTERM, the
    temporary is removed and nothing appears at ``path``; when the disk is full the error says so.
    Temporaries left in the folder by killed processes are removed first.

    Args:
        path: the output file.
        write: fills the file it is given (any library; the suffix is the output's).
        overwrite: replace an existing file.
        verify: an extra check of the written temporary; raise to refuse publishing it.

    Raises:
        UserInputError: output checks of :func:`check_output_path`; "disk full writing ...";
            :class:`IncompleteFileError` when the written file is truncated or does not parse.
    """
    out = check_output_path(path, overwrite=overwrite)
    remove_stale_partials(out.parent)
    tmp = _partial_name(out)
    try:
        try:
            write(tmp)
            if not tmp.exists():
                raise UserInputError(f"writing {out} produced no file; nothing written")
            _fsync_file(tmp)
            verify_file(tmp, name=out)
            if verify is not None:
                verify(tmp)
        except Exception as err:
            raise _disk_full_error(out, err) or err
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(out.parent)
    return out


def atomic_publish_dir(
    path: str | Path,
    build: Callable[[Path], None],
    *,
    overwrite: bool = False,
    verify: bool = True,
) -> Path:
    """Fill a temporary folder with ``build(tmp_dir)``, check it, and move its contents into ``path``.

    - ``path`` missing: the temporary folder is a hidden sibling and is renamed to ``path`` in one step.
    - ``path`` an existing folder: the temporary folder is hidden inside it; after the build, every
      file is moved in (sub-folders missing at ``path`` move whole, one rename each; then the files at
      the top level, so an index such as ``datalist.json`` appears last). Files already at ``path``
      are refused before anything moves, unless ``overwrite``; files at ``path`` that the build did
      not make are kept.

    Args:
        path: the folder to publish (its parent must exist).
        build: writes every file of the folder under the path it is given (any writer; plain writes
            or :func:`atomic_write`).
        overwrite: replace files that exist at ``path``.
        verify: check every built file with :func:`verify_file` (skip when ``build`` already wrote
            them with :func:`atomic_write`).

    Returns:
        ``path``. On any error, interruption or SIGTERM the temporary folder is removed and nothing
        at ``path`` changes.

    Raises:
        UserInputError: ``path`` is a file, its parent is missing or not writable, a built file
            exists at ``path`` without ``overwrite``, a full disk, or a built file that is incomplete.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise UserInputError(f"output {target} is a file; give a folder")
    exists = target.is_dir()
    holder = target if exists else (target.parent if str(target.parent) else Path("."))
    if not holder.is_dir():
        raise UserInputError(f"output folder {holder} does not exist; create it first")
    if not os.access(holder, os.W_OK | os.X_OK):
        raise UserInputError(f"output folder {holder} is not writable; choose another output path")
    remove_stale_partials(holder)
    tmp = (target / f".{target.name}") if exists else target
    tmp = _partial_name(tmp, keep_suffix=False)
    try:
        tmp.mkdir()
        try:
            build(tmp)
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            for file in files:
                _fsync_file(file)
                if verify:
                    verify_file(file, name=target / file.relative_to(tmp))
        except Exception as err:
            raise _disk_full_error(target, err) or err
        if not exists:
            os.rename(tmp, target)
            _fsync_dir(target.parent)
            return target
        clashes = [target / f.relative_to(tmp) for f in files if (target / f.relative_to(tmp)).exists()]
        if clashes and not overwrite:
            raise UserInputError(
                f"{clashes[0]} exists ({len(clashes)} output file(s) in all); choose another output folder "
                "or allow overwriting", setting="overwrite",
            )
        _merge_into(tmp, target)
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target)
    return target


def _merge_into(source: Path, target: Path) -> None:
    """Move ``source``'s entries into the existing folder ``target``: folders first, then files."""
    entries = sorted(source.iterdir(), key=lambda p: (not p.is_dir(), p.name))
    for entry in entries:
        dest = target / entry.name
        if entry.is_dir():
            if dest.is_dir():
                _merge_into(entry, dest)
            elif dest.exists():
                raise UserInputError(f"{dest} is a file where a folder is to be written; move it away")
            else:
                os.rename(entry, dest)
        else:
            if dest.is_dir():
                raise UserInputError(f"{dest} is a folder where a file is to be written; move it away")
            os.replace(entry, dest)


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Remove this package's temporaries in ``folder`` whose writer is gone; return what was removed.

    A temporary is stale when its process (named in its file name) no longer runs on this machine,
    when it comes from another machine and is older than a day, or when it has the name of an older
    version of the package and is older than an hour. Temporaries of running writers are kept.
    One warning line names how many were removed.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        match = _PARTIAL.match(entry.name)
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if match:
            if match["host"] == _HOST:
                stale = int(match["pid"]) != os.getpid() and not _process_alive(int(match["pid"]))
            else:
                stale = age > FOREIGN_STALE_SECONDS
        else:
            stale = bool(_LEGACY_PARTIAL.match(entry.name)) and age > _LEGACY_STALE_SECONDS
        if not stale:
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    if removed:
        logger.warning("removed %d temporary file(s) left in %s by an interrupted run", len(removed), folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _fsync_file(path: Path) -> None:
    """Flush a file written by any library (C++ included) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename durable; some file systems cannot sync a folder, which is harmless."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _disk_full_error(out: Path, err: BaseException) -> UserInputError | None:
    """The "disk full" error for a failed write, when the disk (or quota) is full; else None.

    Called while the temporary still exists, so the free space seen is what the writer met.
    """
    cause: BaseException | None = err
    full = False
    while cause is not None and not full:
        full = isinstance(cause, OSError) and cause.errno in _DISK_FULL_ERRNOS
        cause = cause.__cause__ or cause.__context__
    if not full:
        try:
            full = shutil.disk_usage(out.parent if str(out.parent) else ".").free < DISK_FULL_BYTES
        except OSError:
            full = False
    if not full:
        return None
    error = UserInputError(f"disk full writing {out}: nothing written; free space in {out.parent} or choose another "
                           "output folder")
    error.__cause__ = err
    return error


# --- verification of written files --------------------------------------------------------------


def verify_file(path: str | Path, *, name: str | Path | None = None) -> None:
    """Check that a written file is complete, by its type (suffix); unknown types are only checked to exist.

    - ``.nii`` / ``.nii.gz``: the header's data size (offset + voxels x bytes per voxel) fits in the
      file; compressed files are decompressed to the end (length and CRC checked).
    - ``.gz``: decompressed to the end.
    - ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``: read completely with SimpleITK.
    - ``.png``: decoded with Pillow. ``.json``: parsed. ``.csv``: UTF-8 text with a header line.
    - ``.dcm``: parsed with pydicom; the pixel data element has the size its tags give.
    - ``.pt`` / ``.pth`` (zip checkpoints): every member's CRC. ``.safetensors``: data size of the header.

    Args:
        path: the file to check.
        name: the name to show in the error (the final output name of a temporary).

    Raises:
        IncompleteFileError: the file is missing, truncated, or does not parse.
    """
    path = Path(path)
    shown = Path(name) if name is not None else path
    if not path.is_file():
        raise IncompleteFileError(f"writing {shown} produced no file; nothing written")
    check = _VERIFIERS.get(_suffix(path))
    if check is None:
        return
    try:
        problem = check(path)
    except IncompleteFileError:
        raise
    except Exception as err:  # each library raises its own types for a broken file
        problem = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    if problem:
        raise IncompleteFileError(f"writing {shown} produced an incomplete file ({problem}); nothing written")


def _gunzip_size(path: Path) -> int:
    """Decompress a gzip file to the end (EOFError / BadGzipFile when truncated); return its length."""
    total = 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            total += len(chunk)
    return total


def _nifti_problem(path: Path) -> str | None:
    compressed = path.name.lower().endswith(".gz")
    need = _nifti_need(path)
    if need is None:
        return "shorter than a NIfTI header (348 bytes)"
    have = _gunzip_size(path) if compressed else path.stat().st_size
    if have < need:
        return f"{have} of {need} bytes"
    return None


def quick_image_check(path: str | Path) -> str | None:
    """What is visibly wrong with an image file, without reading its voxels; None when nothing is.

    Empty files; NIfTI whose header claims more data than the file (``.nii``) or than the gzip
    trailer records (``.nii.gz``; decompressed to the end only when the trailer disagrees, as with
    a truncated file or a multi-member gzip). Other types: only the size.
    """
    path = Path(path)
    if path.is_dir():
        return None
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    suffix = _suffix(path)
    if suffix not in (".nii", ".nii.gz"):
        return None
    try:
        if suffix == ".nii.gz":
            with open(path, "rb") as f:
                f.seek(-4, os.SEEK_END)
                recorded = struct.unpack("<I", f.read(4))[0]
            header_need = _nifti_need(path)
            if header_need is not None and recorded == header_need % (1 << 32):
                return None
        return _nifti_problem(path)
    except Exception as err:  # nibabel / gzip raise several types for broken files
        return f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"


def _nifti_need(path: Path) -> int | None:
    """Bytes of a NIfTI file's (uncompressed) header plus data, from its header."""
    import nibabel as nib
    import numpy as np

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read(540)
    if len(head) < 348:
        return None
    header_class = nib.Nifti2Header if struct.unpack("<i", head[:4])[0] in (540, 540 << 24) else nib.Nifti1Header
    header = header_class.from_fileobj(BytesIO(head))
    return int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * \
        header.get_data_dtype().itemsize


def _gzip_problem(path: Path) -> str | None:
    _gunzip_size(path)
    return None


def _itk_problem(path: Path) -> str | None:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.Execute()
    return None


def _png_problem(path: Path) -> str | None:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
    return None


def _json_problem(path: Path) -> str | None:
    json.loads(path.read_text(encoding="utf-8"))
    return None


def _csv_problem(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    return None if text.strip() else "empty file"


def _dicom_problem(path: Path) -> str | None:
    import pydicom

    dataset = pydicom.dcmread(str(path))
    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if "PixelData" not in dataset or (syntax is not None and syntax.is_compressed):
        return None
    frames = int(getattr(dataset, "NumberOfFrames", 1) or 1)
    need = (int(dataset.Rows) * int(dataset.Columns) * int(dataset.SamplesPerPixel) * frames
            * int(dataset.BitsAllocated) // 8)
    have = len(dataset.PixelData)
    return f"pixel data {have} of {need} bytes" if have < need else None


def _zip_problem(path: Path) -> str | None:
    with open(path, "rb") as f:
        starts_as_zip = f.read(4) == b"PK\x03\x04"
    if not zipfile.is_zipfile(path):
        # a zip's index is at its end: a cut-short archive starts like one but has none
        return "the zip archive has no index (cut short)" if starts_as_zip else None
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    return f"member {bad} is damaged" if bad else None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    need = 8 + length + end
    return f"{size} of {need} bytes" if size < need else None


_VERIFIERS: dict[str, Callable[[Path], str | None]] = {
    ".nii": _nifti_problem,
    ".nii.gz": _nifti_problem,
    ".gz": _gzip_problem,
    ".nrrd": _itk_problem,
    ".nhdr": _itk_problem,
    ".mha": _itk_problem,
    ".mhd": _itk_problem,
    ".png": _png_problem,
    ".json": _json_problem,
    ".csv": _csv_problem,
    ".dcm": _dicom_problem,
    ".pt": _zip_problem,
    ".pth": _zip_problem,
    ".safetensors": _safetensors_problem,
}
