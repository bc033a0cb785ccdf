"""Both bundles as the MONAI Model Zoo's ``ci/verify_bundle.py`` checks them in full mode: files,
version in the changelog, metadata schema, the network's input/output shapes, TorchScript export of
the shipped ``models/model.pt``; and one network description shared by the configs and the weights."""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from bundle_helpers import BUNDLE_NAMES, BUNDLES, NETWORK_NAMES, SCHEMA, SCHEMA_MD5, copy_bundle

FILES = (
    "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
    "configs/multi_gpu_train.json", "configs/multi_gpu_evaluate.json", "configs/logging.conf", "docs/README.md",
    "LICENSE", "models/model.pt",
)
CONFIGS = ("train.json", "evaluate.json", "inference.json")


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_files_version_and_metadata(name: str) -> None:
    root = BUNDLES / name
    missing = [f for f in FILES if not (root / f).is_file()]
    assert not missing, f"{name} lacks {missing}"
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"]
    verify_metadata(meta_file=str(root / "configs" / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)
    assert set(meta["network_data_format"]["inputs"]) == {"image"}
    assert set(meta["network_data_format"]["outputs"]) == {"pred"}


def test_metadata_violating_the_schema_is_rejected(tmp_path) -> None:
    meta = json.loads((BUNDLES / "tat_allinone" / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]["inputs"]["image"]["num_channels"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="num_channels"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_network_in_out_at_the_shipped_size(name: str) -> None:
    configs = BUNDLES / name / "configs"
    verify_net_in_out(net_id="network_def", meta_file=str(configs / "metadata.json"),
                      config_file=str(configs / "inference.json"), device="cpu", bundle_root=str(BUNDLES / name))


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_one_network_description_matching_the_shipped_weights(name: str) -> None:
    defs = [ConfigParser.load_config_file(str(BUNDLES / name / "configs" / c))["network_def"] for c in CONFIGS]
    assert defs[0] == defs[1] == defs[2]
    assert defs[0]["_target_"].endswith(NETWORK_NAMES[name])
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def")
    state = torch.load(BUNDLES / name / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())  # a plain state dict, as MONAI expects
    network.load_state_dict(state, strict=True)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_papers_recipe_in_train_config(name: str) -> None:
    cfg = ConfigParser.load_config_file(str(BUNDLES / name / "configs" / "train.json"))
    iterations, min_lr = {"tat_allinone": (400000, 1e-7), "amir_allinone": (200000, 1e-6)}[name]
    assert cfg["max_iterations"] == iterations and cfg["min_learning_rate"] == min_lr
    assert cfg["learning_rate"] == 2e-4 and cfg["patch_size"] == [128, 128] and cfg["ema_decay"] == 0.999
    assert cfg["train"]["trainer"]["_target_"] == "SupervisedTrainer"
    optimizer = {"tat_allinone": "torch.optim.AdamW", "amir_allinone": "torch.optim.Adam"}[name]
    assert cfg["optimizer"]["_target_"] == optimizer


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_readme_commands_name_existing_configs_and_keys(name: str) -> None:
    """Every ``monai.bundle run`` line of the README names configs that exist and overrides keys they have."""
    text = (BUNDLES / name / "docs" / "README.md").read_text()
    commands = [c.replace("\\\n", " ") for c in re.findall(r"python -m monai\.bundle run(?:\\\n|[^\n])*", text)]
    assert len(commands) >= 4
    for command in commands:
        args = shlex.split(command)[4:]
        config_arg = args[args.index("--config_file") + 1]
        names = ast.literal_eval(config_arg) if config_arg.startswith("[") else [config_arg]
        parser = ConfigParser()
        parser.read_config([str(BUNDLES / name / f) for f in names])
        keys = [a[2:] for a in args if a.startswith("--") and a != "--config_file"]
        for key in keys:
            if key in ("dataset_dir", "datalist", "bundle_root"):
                continue
            assert key in parser, f"{command}: no '{key}' in {names}"


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_model_zoo_export_line(name: str, tmp_path) -> None:
    """The Model Zoo's plain export line (scripting, no ``--use_trace``) gives a size-generic model."""
    root = copy_bundle(name, tmp_path, weights=True)
    command = ("-m monai.bundle ckpt_export network_def --filepath models/model.ts --ckpt_file models/model.pt "
               "--meta_file configs/metadata.json --config_file configs/inference.json")
    proc = subprocess.run([sys.executable, *command.split()], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scripted = torch.jit.load(str(root / "models" / "model.ts"))
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    network.eval()
    # 200 x 208: larger than the level-1 local window of TAT (192), unlike the 128 x 128 of metadata.json
    for shape in ((1, 1, 128, 128), (2, 1, 200, 208)):
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), network(x), rtol=0, atol=1e-5)
