"""Restore one volume file in a background process and report progress on stdout.

The Slicer module starts this file with PythonSlicer (plain ``python`` works too) so that the
network runs outside Slicer's main thread and Slicer stays responsive::

    python restore_volume_script.py --input in.nrrd --output out.nrrd \
        --task auto --modality CT --model tat --device auto [--batch-size 8] [--self-ensemble] [--amp fp16] \
        [--dicom-files files.txt] [--suv-factor F] [--confidence confidence.nrrd]

Units: Slicer loads a DICOM PET in Bq/mL (activity concentration). When the volume is a PET and
the DICOM files behind it are named (``--dicom-files``), its SUV factor is computed from their
headers (``monai_tat.io.suv_factor_from_dicom``); ``--suv-factor`` gives it directly. The volume
is restored in SUV and written back in Bq/mL, the input's units (the WINDOW line is in those
units too). A PET in Bq/mL without either, or a CT not in HU, is refused by ``monai_tat``'s units
check with a message that says what to do.

All work happens in ``monai_tat``: the task comes from its task registry (``monai_tat.tasks``:
the DICOM modality Slicer recorded, else the intensities), and
``monai_tat.inference.restore_file`` (the same function as ``monai-tat restore``) checks the
paths, reads the input, loads the model, restores slice by slice and writes the result atomically
with the input's geometry. This script adds only its progress lines.

Protocol: every message is one line on stdout, ``<KIND> <payload>``, flushed at once:

- ``STATUS <text>``: what the script is doing now (reading, loading the model, ...);
- ``TASK <name>``: the registry task the volume is restored for (resolved before the first slice);
- ``WINDOW <low> <high>`` or ``WINDOW auto``: the task's display window in its physical units
  (``TaskSpec.display_window``), or ``auto`` when the task has none (MRI); sent after TASK;
- ``PROGRESS <done> <total>``: slices restored so far and slices in the volume (with
  ``--confidence``, over all 8 restorations the map needs);
- ``CONFIDENCE <units>``: the confidence map was written to the ``--confidence`` file, in these
  units (the restored volume's: HU, SUV, Bq/mL, a.u.); sent before DONE;
- ``DONE <path>``: the restored volume was written to ``path``;
- ``SETTING <name>``: the setting that fixes the error that follows (``task``, ``model``,
  ``device``, ``batch_size``), when the library names one;
- ``ERROR <text>``: why the restoration failed (one line, plain words from the library);
  a ``monai_tat`` other than the one this extension ships is refused this way, before any work
  (see :func:`import_shipped_library`).

Any other line (warnings of libraries, tracebacks) is free text for the log. Exit status: 0 on
success, 2 for a problem the user can fix (bad file, wrong checkpoint, unknown task), 1 otherwise.

The task names, modality codes and windows all come from ``monai_tat.tasks``; neither this script
nor the Slicer module repeats them (the panel's task labels aside, which a test checks against
the registry).

This module imports nothing heavy at import time, so the Slicer logic can import it to share the
protocol (:func:`format_message`, :func:`parse_message`) without torch.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
import traceback
from pathlib import Path
from typing import Optional, Sequence, TextIO, Tuple

STATUS = "STATUS"
TASK = "TASK"
WINDOW = "WINDOW"
PROGRESS = "PROGRESS"
DONE = "DONE"
SETTING = "SETTING"
ERROR = "ERROR"
CONFIDENCE = "CONFIDENCE"
MODALITY = "MODALITY"  # sample_data_script.py: the DICOM modality of the sample volume it wrote
MESSAGE_KINDS = (STATUS, TASK, WINDOW, PROGRESS, DONE, SETTING, ERROR, CONFIDENCE, MODALITY)
AUTO = "auto"  # the automatic task, and a WINDOW line's payload for "no fixed window"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2

LIBRARY = "monai_tat"
#: The module's folder: ``qt-scripted-modules`` of the installed extension, or
#: ``slicer_extension/MedicalRestore`` of a source checkout.
MODULE_DIR = Path(__file__).resolve().parents[1]


def format_message(kind: str, *fields: object) -> str:
    """One protocol line (without newline); line breaks inside fields become spaces."""
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"unknown message kind {kind!r}; expected one of {MESSAGE_KINDS}")
    payload = " ".join(str(field) for field in fields)
    return f"{kind} {' '.join(payload.split())}".rstrip()


def parse_message(line: str) -> Optional[Tuple[str, object]]:
    """Parse one output line: ``(kind, payload)`` for a protocol line, ``None`` for free text.

    The payload is ``(done, total)`` ints for PROGRESS, ``(low, high)`` floats or ``None``
    (automatic) for WINDOW, and the remaining text otherwise.
    """
    kind, _, payload = line.strip().partition(" ")
    if kind not in MESSAGE_KINDS:
        return None
    try:
        if kind == PROGRESS:
            done, total = (int(value) for value in payload.split())
            return kind, (done, total)
        if kind == WINDOW:
            if payload.strip() == AUTO:
                return kind, None
            low, high = (float(value) for value in payload.split())
            return kind, (low, high)
    except ValueError:
        return None  # a malformed line is free text, not a message
    return kind, payload.strip()


def emit(kind: str, *fields: object, stream: Optional[TextIO] = None) -> None:
    """Write one protocol line to stdout and flush it so the parent sees it at once."""
    stream = stream or sys.stdout
    stream.write(format_message(kind, *fields) + "\n")
    stream.flush()


def build_parser() -> argparse.ArgumentParser:
    """Command line of the background script."""
    parser = argparse.ArgumentParser(
        description="Restore a CT, PET or MRI volume with monai_tat (TAT / AMIR) and report progress."
    )
    parser.add_argument("--input", required=True, help="input volume (NRRD, NIfTI or MHA)")
    parser.add_argument("--output", required=True, help="restored volume to write (NRRD, NIfTI or MHA)")
    parser.add_argument("--task", default=AUTO, help="restoration task: auto or a task name of monai_tat.tasks")
    parser.add_argument(
        "--modality", default=None, help="DICOM modality recorded for the volume (CT, PT, MR ...), if any"
    )
    parser.add_argument("--model", default="tat", help="tat, amir, a bundle directory or a checkpoint file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per batch (default: automatic)")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                        help="mixed precision on CUDA (half precision); none: float32")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="average the network over the 8 flips / transpositions of each slice")
    parser.add_argument("--dicom-files", default=None,
                        help="text file naming the DICOM files the volume was loaded from, one per line (PET: SUV factor)")
    parser.add_argument("--suv-factor", type=float, default=None, help="PET in Bq/mL: SUV = value x factor")
    parser.add_argument("--confidence", default=None,
                        help="also write the confidence map (NRRD, NIfTI or MHA) here: high = do not trust fine detail")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


class ScriptInputError(Exception):
    """monai_tat cannot be imported in this Python: nothing else can be checked or done."""


# -- the library this extension ships ---------------------------------------------------------


def library_root(module_dir: Path = MODULE_DIR) -> Optional[Path]:
    """The folder holding the ``monai_tat`` this module ships, or None when it is missing.

    Installed from the Extensions Manager, the library sits beside the module (the extension's
    CMake installs it there); in a source checkout it is the repository root, two folders up.
    """
    for folder in (Path(module_dir), Path(module_dir).parents[1]):
        if (folder / LIBRARY / "__init__.py").is_file():
            return folder
    return None


def shipped_version(root: Path) -> str:
    """``__version__`` of the library under ``root``, read from its source without importing it."""
    init = Path(root) / LIBRARY / "__init__.py"
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(target, "id", None) == "__version__" for target in node.targets):
            return str(ast.literal_eval(node.value))
    raise ScriptInputError(f"{init} sets no __version__; reinstall the MedicalRestore extension")


def check_library(module, root: Path, expected_version: str) -> None:
    """Refuse a ``monai_tat`` that is not the copy under ``root`` at ``expected_version``.

    Raises:
        ScriptInputError: one line naming both copies and how to remove the other one.
    """
    found = Path(module.__file__).resolve().parent
    shipped = (Path(root) / LIBRARY).resolve()
    version = getattr(module, "__version__", "of unknown version")
    if found != shipped or version != expected_version:
        raise ScriptInputError(
            f"monai_tat {version} from {found} was imported instead of the monai_tat {expected_version} "
            f"this extension ships ({shipped}): remove the other copy from Slicer's Python "
            "(slicer.util.pip_uninstall('monai-tat')) and restart Slicer"
        )


def import_shipped_library(root: Optional[Path]):
    """Import the ``monai_tat`` under ``root`` (put first on ``sys.path``) and check it is that copy."""
    if root is None:
        raise ScriptInputError(
            f"the monai_tat library is missing beside the module in {MODULE_DIR}; reinstall the MedicalRestore extension"
        )
    expected = shipped_version(root)
    if not sys.path or Path(sys.path[0]).resolve() != Path(root).resolve():
        sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(LIBRARY)
    except ImportError as error:
        raise ScriptInputError(
            f"monai_tat cannot be imported in {sys.executable} ({error}); install the packages it needs "
            "(the MedicalRestore module offers to on Restore)"
        ) from error
    check_library(module, root, expected)
    return module


def choose_task(task: Optional[str], modality: Optional[str]) -> str:
    """The task to restore for: ``task`` checked against the registry, or ``"auto"``.

    Automatic takes the task of the recorded DICOM ``modality`` when the registry knows it; with
    no (or an unknown) modality it stays automatic, and ``restore_file`` decides from the
    intensities. An explicit task that contradicts the recorded modality is refused, because a
    CT restored as a PET (or the reverse) is silently wrong.

    Raises:
        UserInputError: an unknown task name, or one the modality contradicts (``setting="task"``).
    """
    from monai_tat.errors import UserInputError
    from monai_tat.tasks import check_task, task_for_modality

    recorded = task_for_modality(modality) if modality else None
    if task is None or str(task).strip().lower() == AUTO:
        return recorded or AUTO
    chosen = check_task(str(task).strip())
    if recorded is not None and recorded != chosen:
        raise UserInputError(
            f"this volume's DICOM modality is {modality.strip().upper()}, which is the {recorded} task, not "
            f"{chosen}; choose {recorded} or automatic",
            setting="task",
        )
    return chosen


def emit_task(task: str, suv_factor: Optional[float] = None) -> None:
    """TASK and WINDOW lines for the resolved ``task``, its display window read from the registry.

    With ``suv_factor`` (a PET given back in Bq/mL) the SUV window is sent in Bq/mL.
    """
    from monai_tat.tasks import get_task

    window = get_task(task).display_window
    if window is not None and suv_factor is not None and get_task(task).dicom_conversion == "suv_factor":
        window = tuple(value / suv_factor for value in window)
    emit(TASK, task)
    emit(WINDOW, *(window if window is not None else (AUTO,)))


def source_suv_factor(
    task: str, input_path: str, dicom_files: Optional[str], suv_factor: Optional[float]
) -> Optional[float]:
    """The SUV factor of a PET volume: given, or computed from the DICOM files named in ``dicom_files``.

    None for other tasks, for a PET with neither (the units check then decides), and for a PET
    from DICOM whose voxels are already in SUV (a loader that converted them).
    """
    from monai_tat.tasks import TASK_SPECS, get_task

    spec = TASK_SPECS.get(str(task).lower())  # "auto" until the task is resolved
    if spec is None or spec.dicom_conversion != "suv_factor" or suv_factor is not None or not dicom_files:
        return suv_factor
    from monai_tat.inference.units import foreign_units_of
    from monai_tat.io import read_volume, suv_factor_from_dicom

    with open(dicom_files, encoding="utf-8") as listing:
        files = [line.strip() for line in listing if line.strip()]
    if not files:
        return None
    if foreign_units_of(get_task(task), read_volume(input_path).as_tensor()) is None:
        emit(STATUS, "PET from DICOM with values already in SUV: restored as they are")
        return None
    factor = float(suv_factor_from_dicom(files))
    emit(STATUS, f"PET in Bq/mL: SUV factor {factor:.6g} from {len(files)} DICOM files; the result is given back in Bq/mL")
    return factor


#: Said in Slicer's words when a PET is refused for its units (the library names command-line-free fixes).
SLICER_PET_UNITS_FIX = (
    "In Slicer: load the PET with the DICOM module (its SUV factor is then read from the DICOM files), or "
    "convert the volume to SUV before restoring it."
)


def restore(args: argparse.Namespace) -> int:
    """Restore one volume file through ``monai_tat.inference.restore_file``, emitting protocol lines.

    The task is checked before anything is read; ``restore_file`` checks the paths and the model
    before any slice is computed and writes the result atomically; this script only turns its
    callbacks into protocol lines.
    """
    emit(STATUS, "importing monai_tat and torch")
    library = import_shipped_library(library_root())
    emit(STATUS, f"using monai_tat {library.__version__} from {Path(library.__file__).parent}")
    from monai_tat.errors import UserInputError
    from monai_tat.inference import restore_file

    try:
        task = choose_task(args.task, args.modality)
        suv_factor = source_suv_factor(task, args.input, args.dicom_files, args.suv_factor)
        result = restore_file(
            args.input, args.output, args.model, task=task, device=args.device, batch_size=args.batch_size,
            self_ensemble=args.self_ensemble, amp=args.amp, suv_factor=suv_factor,
            overwrite=args.overwrite, status=lambda text: emit(STATUS, text),
            on_task=lambda name: emit_task(name, suv_factor),
            progress=lambda done, total: emit(PROGRESS, int(done), int(total)),
            confidence_path=args.confidence,
        )
    except (UserInputError, OSError) as error:
        # The same errors the command line reports as user errors (bad file, wrong checkpoint).
        setting = getattr(error, "setting", None)
        if setting:
            emit(SETTING, setting)
        emit(ERROR, f"{error} {SLICER_PET_UNITS_FIX}" if setting == "suv_factor" else error)
        return EXIT_USER_ERROR
    if result.confidence is not None:
        emit(CONFIDENCE, result.confidence.meta["confidence"]["units"])
    emit(DONE, args.output)
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; never raises, every failure ends in an ERROR line and a non-zero status."""
    args = build_parser().parse_args(argv)
    try:
        return restore(args)
    except ScriptInputError as error:
        emit(ERROR, error)
        return EXIT_USER_ERROR
    except Exception as error:  # noqa: BLE001 - the parent only sees stdout; report everything
        traceback.print_exc(file=sys.stdout)
        emit(ERROR, f"unexpected {type(error).__name__}: {error}")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
