"""Restore one volume file in a background process and report progress on stdout.

The Slicer module starts this file with PythonSlicer (plain ``python`` works too) so that the
network runs outside Slicer's main thread and Slicer stays responsive::

    python restore_volume_script.py --input in.nrrd --output out.nrrd \
        --task ct --model tat --device auto [--batch-size 8]

All work happens in ``monai_tat.inference.restore_file`` (the same function as ``monai-tat
restore``): it checks the paths, reads the input, loads the model, restores slice by slice and
writes the result atomically with the input's geometry. This script adds only its progress lines.

Protocol: every message is one line on stdout, ``<KIND> <payload>``, flushed at once:

- ``STATUS <text>``: what the script is doing now (reading, loading the model, ...);
- ``TASK <ct|pet|mri>``: the task the volume is restored for (resolved before the first slice);
- ``PROGRESS <done> <total>``: slices restored so far and slices in the volume;
- ``DONE <path>``: the restored volume was written to ``path``;
- ``ERROR <text>``: why the restoration failed (one line).

Any other line (warnings of libraries, tracebacks) is free text for the log. Exit status: 0 on
success, 2 for a problem the user can fix (bad file, wrong checkpoint, unknown task), 1 otherwise.

This module imports nothing heavy at import time, so the Slicer logic can import it to share the
protocol (:func:`format_message`, :func:`parse_message`) without torch.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Optional, Sequence, TextIO, Tuple

STATUS = "STATUS"
TASK = "TASK"
PROGRESS = "PROGRESS"
DONE = "DONE"
ERROR = "ERROR"
MESSAGE_KINDS = (STATUS, TASK, PROGRESS, DONE, ERROR)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2



def format_message(kind: str, *fields: object) -> str:
    """One protocol line (without newline); line breaks inside fields become spaces."""
    if kind not in MESSAGE_KINDS:
        raise ValueError(f"unknown message kind {kind!r}; expected one of {MESSAGE_KINDS}")
    payload = " ".join(str(field) for field in fields)
    return f"{kind} {' '.join(payload.split())}".rstrip()


def parse_message(line: str) -> Optional[Tuple[str, object]]:
    """Parse one output line: ``(kind, payload)`` for a protocol line, ``None`` for free text.

    The payload is ``(done, total)`` ints for PROGRESS and the remaining text otherwise.
    """
    kind, _, payload = line.strip().partition(" ")
    if kind not in MESSAGE_KINDS:
        return None
    if kind == PROGRESS:
        try:
            done, total = (int(value) for value in payload.split())
        except ValueError:
            return None
        return kind, (done, total)
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
    parser.add_argument("--task", default="auto", help="restoration task: auto or a task name (ct, pet, mri)")
    parser.add_argument("--model", default="tat", help="tat, amir, a bundle directory or a checkpoint file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per batch (default: automatic)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


class ScriptInputError(Exception):
    """monai_tat cannot be imported in this Python: nothing else can be checked or done."""


def restore(args: argparse.Namespace) -> int:
    """Restore one volume file through ``monai_tat.inference.restore_file``, emitting protocol lines.

    ``restore_file`` checks the paths, the model and the task before any slice is computed and
    writes the result atomically; this script only turns its callbacks into protocol lines.
    """
    emit(STATUS, "importing monai_tat and torch")
    try:
        from monai_tat.errors import UserInputError
        from monai_tat.inference import restore_file
    except ImportError as error:
        raise ScriptInputError(
            f"monai_tat cannot be imported in {sys.executable} ({error}); install it (and torch) "
            "into this Python, e.g. through the MedicalRestore module's install offer"
        ) from error

    try:
        restore_file(
            args.input, args.output, args.model, task=args.task, device=args.device, batch_size=args.batch_size,
            overwrite=args.overwrite, status=lambda text: emit(STATUS, text), on_task=lambda task: emit(TASK, task),
            progress=lambda done, total: emit(PROGRESS, int(done), int(total)),
        )
    except (UserInputError, OSError) as error:
        # The same errors the command line reports as user errors (bad file, wrong checkpoint).
        emit(ERROR, error)
        return EXIT_USER_ERROR
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
