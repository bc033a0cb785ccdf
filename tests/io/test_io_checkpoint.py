"""Reading checkpoints safely: state dict wrappers, safetensors metadata, bundles, refused files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from monai_tat.errors import UserInputError
from monai_tat.io import read_checkpoint


def _state(value: float = 1.0) -> dict[str, torch.Tensor]:
    return {"conv.weight": torch.full((2, 1, 3, 3), value), "conv.bias": torch.zeros(2)}


def test_raw_and_wrapped_state_dicts(tmp_path):
    torch.save(_state(), tmp_path / "raw.pt")
    state, config = read_checkpoint(tmp_path / "raw.pt")
    assert set(state) == {"conv.weight", "conv.bias"} and config is None
    # Training checkpoints: EMA weights preferred, DataParallel prefix stripped, optimizer ignored.
    wrapped = {
        "params": {f"module.{k}": v for k, v in _state(1.0).items()},
        "params_ema": {f"module.{k}": v for k, v in _state(2.0).items()},
        "optimizer": {"lr": 0.1},
        "iteration": 5,
    }
    torch.save(wrapped, tmp_path / "train.pth")
    state, _ = read_checkpoint(tmp_path / "train.pth")
    assert set(state) == {"conv.weight", "conv.bias"}
    assert float(state["conv.weight"][0, 0, 0, 0]) == 2.0
    torch.save({"state_dict": _state(), "network_config": {"name": "TAT", "dim": 8}}, tmp_path / "cfg.pt")
    assert read_checkpoint(tmp_path / "cfg.pt")[1] == {"name": "TAT", "dim": 8}


def test_safetensors_config_from_metadata_or_sidecar(tmp_path):
    save_file(_state(), str(tmp_path / "a.safetensors"), metadata={"network_config": json.dumps({"name": "AMIR", "dim": 6})})
    state, config = read_checkpoint(tmp_path / "a.safetensors")
    assert config == {"name": "AMIR", "dim": 6} and state["conv.weight"].shape == (2, 1, 3, 3)
    save_file(_state(), str(tmp_path / "b.safetensors"))
    (tmp_path / "b.json").write_text(json.dumps({"network": {"name": "TAT", "dim": 8}}))
    assert read_checkpoint(tmp_path / "b.safetensors")[1] == {"name": "TAT", "dim": 8}


def test_bundle_folder(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "configs").mkdir()
    torch.save(_state(), tmp_path / "models" / "model.pt")
    (tmp_path / "configs" / "inference.json").write_text(
        json.dumps({"network_def": {"_target_": "monai_tat.networks.TAT", "dim": 8, "num_blocks": [1, 1, 1, 1]}})
    )
    state, config = read_checkpoint(tmp_path)
    assert set(state) == {"conv.weight", "conv.bias"}
    assert config == {"name": "TAT", "dim": 8, "num_blocks": [1, 1, 1, 1]}


def test_refused_checkpoints(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save(torch.nn.Conv2d(1, 1, 3), tmp_path / "whole_model.pt")  # a pickled module, not a state dict
    with pytest.raises(UserInputError, match="Python objects"):
        read_checkpoint(tmp_path / "whole_model.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserInputError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(UserInputError, match="cannot read"):
        read_checkpoint(tmp_path / "junk.safetensors")
    torch.save({"epoch": 3}, tmp_path / "no_weights.pt")
    with pytest.raises(UserInputError, match="no state dict"):
        read_checkpoint(tmp_path / "no_weights.pt")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(UserInputError, match="models/model"):
        read_checkpoint(tmp_path / "empty_folder")
