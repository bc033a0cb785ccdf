"""Fixtures of the training tests (the synthetic data writer lives in paired_volumes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from paired_volumes import write_pairs


@pytest.fixture
def paired_dir(tmp_path: Path) -> Path:
    """Folder with ct/pet/mri pairs of 24x20x3 voxels and datalist.json."""
    write_pairs(tmp_path / "data")
    return tmp_path / "data"
