"""DICOM stored pixel values -> physical units (HU for CT, Bq/mL or counts for PET)."""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

from monai_tat.errors import UserInputError

__all__ = ["rescale_to_physical"]


def rescale_to_physical(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Apply ``value = stored * RescaleSlope + RescaleIntercept`` (0028,1053)/(0028,1052).

    Missing tags mean slope 1 and intercept 0, as the standard says for images without them.
    SimpleITK's DICOM reader already applies this; use it only on raw ``pixel_array`` data.

    Args:
        stored: stored values of one frame or slice, any shape, any numeric dtype.
        dataset: the header of that frame or slice (PET slopes change from slice to slice).

    Returns:
        float32 array of the same shape (float64 if ``stored`` is float64). ``stored`` is not modified.
    """
    try:
        slope = float(dataset.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(dataset.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError) as err:
        raise UserInputError(
            f"RescaleSlope (0028,1053) or RescaleIntercept (0028,1052) is not a number: {err}"
        ) from err
    if not np.isfinite(slope) or not np.isfinite(intercept):
        raise UserInputError("RescaleSlope (0028,1053) / RescaleIntercept (0028,1052) is not finite.")
    dtype = np.float64 if np.asarray(stored).dtype == np.float64 else np.float32
    return np.asarray(stored, dtype=dtype) * dtype(slope) + dtype(intercept)
