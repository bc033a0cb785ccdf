"""Exceptions for mistakes a user can make (bad path, wrong shape, missing tag, wrong checkpoint).

Every module raises :class:`UserInputError` (or a subclass) with a message that names the cause
and the fix in words any user can act on, a 3D Slicer user included: no command-line flags. When
the fix is to change one setting, ``setting`` names it (``"task"``, ``"device"``, ``"model"``,
``"overwrite"`` ...); the command line adds its own option name for it and prints one line on
stderr with exit status 2.
"""

from __future__ import annotations

__all__ = ["UserInputError", "CheckpointMismatchError", "RestorationCancelled"]


class UserInputError(ValueError):
    """An input the user supplied cannot be used; the message says why and what to do instead.

    Args:
        message: cause and fix, in plain words.
        setting: the one setting that fixes it, if any (a name, not a command-line flag).
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class CheckpointMismatchError(UserInputError):
    """A checkpoint does not fit the network it is loaded into (another architecture or size)."""


class RestorationCancelled(Exception):
    """The caller's ``cancel`` signal stopped a restoration between two batches; nothing was produced.

    Not a :class:`UserInputError`: nothing was wrong, the user asked to stop.
    """
