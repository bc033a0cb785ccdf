"""monai-tat: all-in-one medical image restoration (TAT, AMIR, Restormer) for MONAI.

Importing the package imports the networks, so MONAI bundle configs can name them by their short
``_target_`` (``{"_target_": "TAT"}``) after ``"imports": ["$import monai_tat"]``: MONAI's
ComponentLocator indexes imported modules whose names start with ``monai``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from monai_tat import networks
from monai_tat.errors import CheckpointMismatchError, UserInputError
from monai_tat.networks import AMIR, TAT, Restormer, load_reference_state_dict, network_from_state_dict

__all__ = [
    "AMIR",
    "TAT",
    "Restormer",
    "CheckpointMismatchError",
    "UserInputError",
    "load_reference_state_dict",
    "network_from_state_dict",
    "networks",
    "__version__",
]
