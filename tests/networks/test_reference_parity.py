"""Parity with the authors' reference implementations, number for number, in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_tat.errors import CheckpointMismatchError
from monai_tat.networks import AMIR, TAT, load_reference_state_dict, network_from_state_dict
from tests.conftest import FIXTURES
from tests.networks.reference_weights import rebuild_reference_state_dict

# Full-size float64 parity against the authors' reference outputs: part of CI, not of the quick loop.
pytestmark = pytest.mark.slow

TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def tat_reference() -> tuple[dict, int]:
    return rebuild_reference_state_dict(FIXTURES / "tat_reference_state.json")


@pytest.fixture(scope="module")
def amir_reference() -> tuple[dict, int]:
    return rebuild_reference_state_dict(FIXTURES / "amir_reference_state.json")


@pytest.fixture(scope="module")
def tat_float64(tat_reference) -> TAT:
    return load_reference_state_dict(TAT(), tat_reference[0]).double().eval()


@pytest.mark.parametrize("size", ["128", "256", "200x136"])  # TLC off at 128, on at 256 and 200x136
def test_tat_matches_reference(tat_float64: TAT, size: str) -> None:
    io = np.load(FIXTURES / "tat_reference_io.npz")
    with torch.no_grad():
        out = tat_float64(torch.from_numpy(io[f"input_{size}"]))
    assert out.dtype == torch.float64
    assert float((out - torch.from_numpy(io[f"output_{size}"])).abs().max()) <= TOLERANCE


def test_tat_without_local_windows_differs_where_they_apply(tat_float64: TAT) -> None:
    """Switching TLC off must change the 256x256 result (windows are active there) and not the 128 one."""
    io = np.load(FIXTURES / "tat_reference_io.npz")
    tat_float64.set_tlc(False)
    try:
        with torch.no_grad():
            out_256 = tat_float64(torch.from_numpy(io["input_256"]))
            out_128 = tat_float64(torch.from_numpy(io["input_128"]))
    finally:
        tat_float64.set_tlc(True)
    assert float((out_256 - torch.from_numpy(io["output_256"])).abs().max()) > 1e-3
    assert float((out_128 - torch.from_numpy(io["output_128"])).abs().max()) <= TOLERANCE


@pytest.mark.parametrize("size", ["128", "b2_96x80"])
def test_amir_matches_reference(amir_reference, size: str) -> None:
    model = load_reference_state_dict(AMIR(), amir_reference[0]).double().eval()
    io = np.load(FIXTURES / "amir_reference_io.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(io[f"input_{size}"]))
    assert out.shape == io[f"output_{size}"].shape
    assert float((out - torch.from_numpy(io[f"output_{size}"])).abs().max()) <= TOLERANCE


def test_reference_value_counts(tat_reference, amir_reference) -> None:
    assert sum(v.numel() for v in tat_reference[0].values()) == tat_reference[1] == 41_687_424
    assert sum(v.numel() for v in amir_reference[0].values()) == amir_reference[1] == 23_540_504


def test_network_from_reference_state_dict_rebuilds_the_architecture(amir_reference) -> None:
    model = network_from_state_dict(amir_reference[0])
    assert isinstance(model, AMIR) and model.config["dim"] == 42 and model.config["num_blocks"] == (5, 7, 7, 9)
    assert not model.training


def test_other_architecture_checkpoint_names_missing_and_unexpected_keys(amir_reference) -> None:
    with pytest.raises(CheckpointMismatchError) as error:
        load_reference_state_dict(TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1), amir_reference[0])
    message = str(error.value)
    assert "missing keys" in message and "tren (" in message
    assert "unexpected keys" in message and "dict_generator (" in message
