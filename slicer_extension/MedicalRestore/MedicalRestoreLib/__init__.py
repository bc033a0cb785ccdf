"""Logic of the MedicalRestore Slicer module, importable with MRML alone (Slicer or slicer-core).

The module file (``MedicalRestore.py``) adds the Qt GUI on top; everything that can run without
a Slicer application lives here and is tested in CI against ``slicer-core``.
"""

from MedicalRestoreLib.errors import RestoreCancelled, RestoreError, RestoreInputError
from MedicalRestoreLib.job import CANCELLED, FAILED, RUNNING, SUCCEEDED, RestoreJob
from MedicalRestoreLib.logic import TASKS, RestoreLogic, normalize_device, normalize_model, normalize_task
from MedicalRestoreLib.progress import ProgressTracker, format_duration

__all__ = [
    "CANCELLED",
    "FAILED",
    "RUNNING",
    "SUCCEEDED",
    "TASKS",
    "ProgressTracker",
    "RestoreCancelled",
    "RestoreError",
    "RestoreInputError",
    "RestoreJob",
    "RestoreLogic",
    "format_duration",
    "normalize_device",
    "normalize_model",
    "normalize_task",
]
