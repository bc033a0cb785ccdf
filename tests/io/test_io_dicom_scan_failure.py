"""A folder GDCM cannot scan (one malformed file beside the user's) must not break reading."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from monai_tat.errors import UserInputError
from monai_tat.io.dicom import dicom_series_files


def _scan_fails(folder: str) -> list[str]:
    raise RuntimeError("gdcmAttribute.h:443: An invalid logic behavior occurred")


def test_named_file_is_read_alone_when_the_folder_scan_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    named = tmp_path / "slice.dcm"
    named.write_bytes(b"\0" * 128 + b"DICM")
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs", staticmethod(_scan_fails))
    assert dicom_series_files(named) == [str(named)]


def test_folder_scan_failure_is_a_user_error_naming_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitk.ImageSeriesReader, "GetGDCMSeriesIDs", staticmethod(_scan_fails))
    with pytest.raises(UserInputError, match=f"cannot scan the DICOM files in {tmp_path}.*invalid logic"):
        dicom_series_files(tmp_path)
