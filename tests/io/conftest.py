"""Synthetic DICOM series for the readers' tests (the tests' one writer, without PET dose attributes)."""

from __future__ import annotations

import functools

import pytest
from dicom_series import write_series


@pytest.fixture
def dicom_writer():
    """:func:`dicom_series.write_series` writing only what a reader needs (PET dose tags via ``extra``)."""
    return functools.partial(write_series, dose=None)
