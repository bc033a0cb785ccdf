"""The ``monai-tat`` command: one entry point, one module per subcommand.

Each subcommand module (``restore``, ``evaluate``, ``simulate``, ``demo``) defines
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Every mistake a
user can make ends as one line ``monai-tat: error: <message>`` on stderr and exit status 2;
Ctrl-C ends with status 130 and SIGTERM (schedulers, ``timeout``) with 143, both with one line
"cancelled; no output was written". No subcommand leaves a partial output file. The package's own
warnings are one line ``monai-tat: warning: <message>``; other libraries' warnings are not shown.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from monai_tat import __version__
from monai_tat.errors import RestorationCancelled, UserInputError
from monai_tat.tasks import TASKS

__all__ = ["main", "build_parser", "SUBCOMMANDS", "EXIT_USER_ERROR", "EXIT_CANCELLED", "EXIT_TERMINATED",
           "Terminated"]

#: Subcommand modules in ``monai_tat.cli``, in help order; each must import (a broken one is an error).
SUBCOMMANDS = ("restore", "evaluate", "simulate", "demo")
#: How a library error's ``setting`` is shown on the command line (default ``--<setting>``).
OPTION_TEXT = {"model": "--model PATH", "task": f"--task {'|'.join(TASKS)}", "device": "--device cpu|cuda|auto",
               "batch_size": "--batch-size N"}
EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130  # the shell's convention for SIGINT
EXIT_TERMINATED = 143  # ... and for SIGTERM
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: unwinds like Ctrl-C, so every temporary output is removed on the way out."""


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so that ``main`` prints one line."""

    def error(self, message: str) -> NoReturn:
        raise UserInputError(f"{message} (see monai-tat {self._subcommand()}--help)")

    def _subcommand(self) -> str:
        parts = self.prog.split()
        return f"{parts[-1]} " if len(parts) > 1 else ""


def build_parser() -> argparse.ArgumentParser:
    """The full ``monai-tat`` parser with every available subcommand registered."""
    parser = _ArgumentParser(
        prog="monai-tat",
        description="All-in-one medical image restoration (low-dose CT, low-count PET, MRI super-resolution) "
        "with TAT and AMIR.",
    )
    parser.add_argument("--version", action="version", version=f"monai-tat {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        # No fallback: a subcommand that fails to import is a broken installation, reported as such.
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{err.filename}: {text}"
    setting = getattr(err, "setting", None)
    if setting:  # the library names the setting; the command line knows its option
        text = f"{text} (option {OPTION_TEXT.get(setting, '--' + setting.replace('_', '-'))})"
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monai-tat`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    try:
        with _sigterm_as_interrupt(), _one_line_warnings():
            parser = build_parser()
            args = parser.parse_args(argv)
            func = getattr(args, "func", None)
            if func is None:
                parser.print_help(sys.stderr)
                return EXIT_USER_ERROR
            _quiet_image_libraries()
            return int(func(args) or 0)
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UserInputError, OSError) as err:
        print(f"monai-tat: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Terminated:
        return _cancelled(EXIT_TERMINATED)
    except KeyboardInterrupt:
        return _cancelled()
    except RestorationCancelled:
        return _cancelled()


def _cancelled(status: int = EXIT_CANCELLED) -> int:
    print("monai-tat: cancelled; no output was written", file=sys.stderr)
    return status


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """The package's warnings and log warnings as one line each; other libraries' warnings dropped."""

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        if str(Path(filename).resolve()).startswith(_PACKAGE_DIR):
            print(f"monai-tat: warning: {' '.join(str(message).split())}", file=sys.stderr)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("monai-tat: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    package_logger = logging.getLogger("monai_tat")
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        package_logger.addHandler(handler)
        propagate, package_logger.propagate = package_logger.propagate, False
        try:
            yield
        finally:
            package_logger.removeHandler(handler)
            package_logger.propagate = propagate


def _quiet_image_libraries() -> None:
    """ITK / GDCM print warnings (about files the user did not name, or tags) that mean nothing to a user."""
    try:
        import SimpleITK as sitk
    except ImportError:
        return
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
