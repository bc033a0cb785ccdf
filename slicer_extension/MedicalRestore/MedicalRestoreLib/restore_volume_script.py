"""Restore one volume file in a background process and report progress on stdout.

The Slicer module starts this file with PythonSlicer (plain ``python`` works too) so that the
network runs outside Slicer's main thread and Slicer stays responsive::

    python restore_volume_script.py --input in.nrrd --output out.nrrd \
        --task ct --model tat --device auto [--batch-size 8]

All model work happens in ``monai_tat``: ``monai_tat.io.read_volume`` reads the input,
``monai_tat.inference.load_model`` and ``monai_tat.inference.restore_volume`` restore it slice by
slice, ``monai_tat.io.write_volume`` writes the result atomically with the input's geometry.

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
import os
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

TASK_CHOICES = ("auto", "ct", "pet", "mri")


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
    parser.add_argument("--task", default="auto", choices=TASK_CHOICES, help="restoration task")
    parser.add_argument("--model", default="tat", help="tat, amir, a bundle directory or a checkpoint file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=None, help="slices per batch (default: automatic)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    return parser


class ScriptInputError(Exception):
    """A problem found before monai_tat is imported (missing input file, missing package)."""


def _check_paths(args: argparse.Namespace) -> None:
    """Cheap checks first, so a typo does not wait for torch to import."""
    if not os.path.isfile(args.input):
        raise ScriptInputError(f"input volume not found: {args.input}; pass an existing NRRD, NIfTI or MHA file")
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        raise ScriptInputError("the output path equals the input path; choose another output file")
    if os.path.exists(args.output) and not args.overwrite:
        raise ScriptInputError(f"output file exists: {args.output}; remove it or pass --overwrite")
    if args.model.lower() not in ("tat", "amir") and not os.path.exists(args.model):
        raise ScriptInputError(
            f"model not found: {args.model}; pass tat, amir, a bundle directory or a checkpoint file"
        )
    if args.batch_size is not None and args.batch_size < 1:
        raise ScriptInputError(f"batch size must be at least 1, got {args.batch_size}")


def restore(args: argparse.Namespace) -> int:
    """Read, restore and write one volume, emitting protocol lines; returns the exit status."""
    _check_paths(args)
    emit(STATUS, "importing monai_tat and torch")
    try:
        from monai_tat.errors import UserInputError
        from monai_tat.inference import load_model, resolve_task, restore_volume
        from monai_tat.io import read_volume, write_volume
    except ImportError as error:
        raise ScriptInputError(
            f"monai_tat cannot be imported in {sys.executable} ({error}); install it (and torch) "
            "into this Python, e.g. through the MedicalRestore module's install offer"
        ) from error

    try:
        emit(STATUS, "reading", args.input)
        image = read_volume(args.input)
        # Resolved here rather than inside restore_volume so the caller learns it before the end.
        task = resolve_task(args.task, image)
        emit(TASK, task)
        emit(STATUS, "loading model", args.model)
        network = load_model(args.model, device=args.device)
        emit(STATUS, "restoring on device", args.device)

        def report(done: int, total: int) -> None:
            emit(PROGRESS, int(done), int(total))

        restored = restore_volume(
            image, network, task, device=args.device, batch_size=args.batch_size, progress=report
        )
        emit(STATUS, "writing", args.output)
        write_volume(restored, args.output, overwrite=args.overwrite)
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
