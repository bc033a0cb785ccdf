"""load_model: demo weights, state dicts, safetensors with configs, reference naming, mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from monai.networks.nets import UNet
from safetensors.torch import save_file

from monai_tat.errors import CheckpointMismatchError, UserInputError
from monai_tat.inference import load_model
from monai_tat.inference import models as models_module
from monai_tat.networks import AMIR, TAT, network_config
from monai_tat.networks.reference import native_to_reference_key

TINY_TAT = dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)


def _same_outputs(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


def test_pt_state_dict_rebuilds_the_right_network(tmp_path):
    net = TAT(**TINY_TAT)
    torch.save(net.state_dict(), tmp_path / "tat.pt")
    loaded = load_model(tmp_path / "tat.pt")
    assert isinstance(loaded, TAT) and not loaded.training
    assert _same_outputs(net, loaded)
    amir = AMIR(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
    torch.save({"params_ema": amir.state_dict()}, tmp_path / "amir.pth")
    assert isinstance(load_model(str(tmp_path / "amir.pth")), AMIR)


def test_reference_key_naming_is_converted(tmp_path):
    net = TAT(**TINY_TAT)
    reference = {native_to_reference_key(k): v for k, v in net.state_dict().items()}
    assert set(reference) != set(net.state_dict())
    torch.save({"params": reference}, tmp_path / "reference.pth")
    assert _same_outputs(net, load_model(tmp_path / "reference.pth"))


def test_safetensors_with_config_and_demo_weights(tmp_path, monkeypatch):
    net = TAT(**TINY_TAT)
    config = json.dumps(network_config(net))
    save_file(net.state_dict(), str(tmp_path / "tat_demo.safetensors"), metadata={"network_config": config})
    assert _same_outputs(net, load_model(tmp_path / "tat_demo.safetensors"))
    monkeypatch.setattr(models_module, "WEIGHTS_DIR", tmp_path)
    assert _same_outputs(net, load_model("TAT"))
    with pytest.raises(UserInputError, match="no trained demo weights are shipped yet for 'amir'") as raised:
        load_model("amir")
    assert raised.value.setting == "model" and "--" not in str(raised.value)  # the CLI adds its flag


def test_checkpoint_of_another_architecture(tmp_path):
    unet = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,))
    torch.save(unet.state_dict(), tmp_path / "unet.pt")
    with pytest.raises(CheckpointMismatchError, match="not a TAT, AMIR or Restormer"):
        load_model(tmp_path / "unet.pt")
    # The file says TAT but holds AMIR weights: the missing and unexpected keys are named.
    amir = AMIR(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
    save_file(amir.state_dict(), str(tmp_path / "wrong.safetensors"),
              metadata={"network_config": json.dumps({"name": "TAT", **TINY_TAT})})
    with pytest.raises(CheckpointMismatchError, match="missing keys: .*unexpected keys: .*channel_routing"):
        load_model(tmp_path / "wrong.safetensors")


def test_missing_checkpoint():
    with pytest.raises(UserInputError, match="not found"):
        load_model("/nonexistent/model.pt")
