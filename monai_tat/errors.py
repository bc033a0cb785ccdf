"""Exceptions for mistakes a user can make (bad path, wrong shape, missing tag, wrong checkpoint).

Every module raises :class:`UserInputError` (or a subclass) with a message that names the cause
and the fix; the command line turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations

__all__ = ["UserInputError", "CheckpointMismatchError"]


class UserInputError(ValueError):
    """An input the user supplied cannot be used; the message says why and what to do instead."""


class CheckpointMismatchError(UserInputError):
    """A checkpoint does not fit the network it is loaded into (another architecture or size)."""
