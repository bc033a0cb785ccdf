"""Fixtures of the bundle tests (helpers live in bundle_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle_helpers import write_pairs


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("paired")
    write_pairs(folder)
    return folder
