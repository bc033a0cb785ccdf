"""Logic of the MedicalRestore Slicer module, importable with MRML alone (Slicer or slicer-core).

The module file (``MedicalRestore.py``) adds the Qt GUI on top; everything that can run without
a Slicer application lives here and is tested in CI against ``slicer-core``. Nothing here imports
``monai_tat``: it ships beside the module but needs torch, which may not be installed yet in
Slicer's Python; the background process imports it and checks it is the shipped copy.
"""

from MedicalRestoreLib.errors import RestoreCancelled, RestoreError, RestoreInputError
from MedicalRestoreLib.job import CANCELLED, FAILED, RUNNING, SUCCEEDED, RestoreJob
from MedicalRestoreLib.logic import RestoreLogic, normalize_device, normalize_model, normalize_task
from MedicalRestoreLib.parameters import RestoreParameters, parameter_node
from MedicalRestoreLib.progress import ProgressTracker, format_duration

__all__ = [
    "CANCELLED",
    "FAILED",
    "RUNNING",
    "SUCCEEDED",
    "ProgressTracker",
    "RestoreCancelled",
    "RestoreError",
    "RestoreInputError",
    "RestoreJob",
    "RestoreLogic",
    "RestoreParameters",
    "format_duration",
    "normalize_device",
    "normalize_model",
    "normalize_task",
    "parameter_node",
]
