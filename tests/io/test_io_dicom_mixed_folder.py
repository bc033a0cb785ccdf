"""A DICOM file named among other files: only its series is read (by UID, from headers), quietly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest


def test_dicom_file_among_other_files_reads_only_its_series_quietly(tmp_path, capfd, caplog, dicom_writer):
    folder = tmp_path / "mixed"
    volume = np.full((3, 12, 10), 1024.0)
    volume[:, 4:8, 3:7] = 1064.0
    dicom_writer(folder, volume, intercept=-1024.0)
    other = tmp_path / "other"
    dicom_writer(other, np.full((2, 6, 6), 500.0))
    for k, path in enumerate(sorted(other.iterdir())):
        shutil.copy(path, folder / f"other{k}.dcm")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 3)
    (folder / "notes.txt").write_text("not an image")

    from monai_tat.io import read_volume
    from monai_tat.io.dicom import dicom_series_files

    files = dicom_series_files(folder / "slice001.dcm")
    assert [Path(f).name for f in files] == ["slice000.dcm", "slice001.dcm", "slice002.dcm"]
    image = read_volume(folder / "slice001.dcm")
    assert tuple(image.shape) == (10, 12, 3)
    assert float(image.max()) == pytest.approx(1064.0) and float(image.min()) == pytest.approx(1024.0)
    assert capfd.readouterr().err == ""
    assert not [r for r in caplog.records if r.levelno >= 30]  # nothing a user would see
