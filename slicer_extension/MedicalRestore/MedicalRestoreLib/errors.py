"""Errors of the MedicalRestore logic (no dependency on monai_tat, which may not be installed yet)."""

from __future__ import annotations


class RestoreInputError(ValueError):
    """The user's choice cannot be restored (no volume, 2D/4D volume, unknown task, missing model).

    The message names the cause and what to do instead; the module shows it as it is.
    """


class RestoreError(RuntimeError):
    """The restoration itself failed (background process error, unreadable result)."""


class RestoreCancelled(RuntimeError):
    """The restoration was cancelled before it finished; nothing was added to the scene."""
