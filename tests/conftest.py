"""Shared pytest fixtures and paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same random state."""
    torch.manual_seed(0)


def pytest_configure(config: pytest.Config) -> None:
    # `python -m pytest -m "not slow"` is the quick loop; CI runs everything.
    config.addinivalue_line("markers", "slow: bundle runs, torchrun, full-size parity and other long tests")
    config.addinivalue_line("markers", "recipe: runs a script of recipes/ end to end, as from a fresh clone")
    # `python -m pytest -m cuda tests` runs the tests that need a GPU (the gpu-check benchmark does).
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")
