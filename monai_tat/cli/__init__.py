"""The ``monai-tat`` command: one entry point, one module per subcommand.

Each subcommand module (``restore``, ``evaluate``, ``simulate``, ``demo``) defines
``register(subparsers)``, which adds its parser and sets ``func(args) -> int``. Every mistake a
user can make ends as one line ``monai-tat: error: <message>`` on stderr and exit status 2;
Ctrl-C ends with status 130. No subcommand leaves a partial output file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from monai_tat import __version__
from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS

__all__ = ["main", "build_parser", "SUBCOMMANDS", "EXIT_USER_ERROR", "EXIT_CANCELLED"]

#: Subcommand modules in ``monai_tat.cli``, in help order; each must import (a broken one is an error).
SUBCOMMANDS = ("restore", "evaluate", "simulate", "demo")
#: How a library error's ``setting`` is shown on the command line (default ``--<setting>``).
OPTION_TEXT = {"model": "--model PATH", "task": f"--task {'|'.join(TASKS)}", "device": "--device cpu|cuda|auto",
               "batch_size": "--batch-size N"}
EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130  # the shell's convention for SIGINT


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
        parser = build_parser()
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_USER_ERROR
        return int(func(args) or 0)
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except (UserInputError, OSError) as err:
        print(f"monai-tat: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return _cancelled()
    except Exception as err:
        # The engine is imported only by the subcommands that need it (keeps --help fast).
        engine = sys.modules.get("monai_tat.inference.engine")
        if engine is not None and isinstance(err, engine.RestorationCancelled):
            return _cancelled()
        raise


def _cancelled() -> int:
    print("monai-tat: cancelled; no output was written", file=sys.stderr)
    return EXIT_CANCELLED
