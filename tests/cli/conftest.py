"""Fixtures: a small CT volume on disk and a tiny TAT checkpoint for command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_data import write_ct


@pytest.fixture
def ct_file(tmp_path: Path) -> Path:
    return write_ct(tmp_path / "ct.nii.gz")


@pytest.fixture
def tat_checkpoint(tmp_path: Path) -> Path:
    from monai_tat.networks import TAT

    path = tmp_path / "tiny_tat.pt"
    torch.save(TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).state_dict(), path)
    return path
