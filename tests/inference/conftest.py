"""Fixtures: stand-in networks and tiny TAT / AMIR for engine tests."""

from __future__ import annotations

import pytest
from inference_standins import Identity, Smoother
from torch import nn


@pytest.fixture
def smoother() -> Smoother:
    return Smoother()


@pytest.fixture
def identity() -> Identity:
    return Identity()


@pytest.fixture
def tiny_tat() -> nn.Module:
    from monai_tat.networks import TAT

    return TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()


@pytest.fixture
def tiny_amir() -> nn.Module:
    from monai_tat.networks import AMIR

    return AMIR(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
