"""Bundle layout and MONAI's checks: verify_metadata (local schema copy) and verify_net_in_out."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out

from bundle_helpers import BUNDLE_NAMES, BUNDLES, SCHEMA, SCHEMA_MD5, TINY

FILES = (
    "configs/metadata.json", "configs/train.json", "configs/evaluate.json", "configs/inference.json",
    "configs/multi_gpu_train.json", "configs/logging.conf", "docs/README.md", "LICENSE",
)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_bundle_files_and_metadata(name: str) -> None:
    root = BUNDLES / name
    missing = [f for f in FILES if not (root / f).is_file()]
    assert not missing, f"{name} lacks {missing}"
    verify_metadata(meta_file=str(root / "configs" / "metadata.json"), filepath=str(SCHEMA), hash_val=SCHEMA_MD5)
    meta = json.loads((root / "configs" / "metadata.json").read_text())
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
def test_network_in_out(name: str) -> None:
    configs = BUNDLES / name / "configs"
    verify_net_in_out(
        net_id="network_def", meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"), device="cpu", **TINY[name],
    )


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_papers_recipe_in_train_config(name: str) -> None:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "train.json"))
    cfg = parser.get()
    sizes = {"tat_allinone": (48, [4, 6, 6, 8], 400000, 1e-7), "amir_allinone": (42, [5, 7, 7, 9], 200000, 1e-6)}[name]
    assert (cfg["network_def"]["dim"], cfg["network_def"]["num_blocks"]) == sizes[:2]
    assert cfg["max_iterations"] == sizes[2] and cfg["min_learning_rate"] == sizes[3]
    assert cfg["learning_rate"] == 2e-4 and cfg["patch_size"] == [128, 128]
    assert other_cfg_matches_shipped_weights(name)


def other_cfg_matches_shipped_weights(name: str) -> bool:
    """evaluate.json and inference.json describe the weights shipped in models/model.pt (the demo model)."""
    shipped = torch.load(BUNDLES / name / "models" / "model.pt", weights_only=True)["network_config"]
    for other in ("evaluate.json", "inference.json"):
        network_def = ConfigParser.load_config_file(str(BUNDLES / name / "configs" / other))["network_def"]
        described = {key: value for key, value in network_def.items() if key != "_target_"}
        assert network_def["_target_"].endswith(shipped["name"])
        assert described == {key: value for key, value in shipped.items() if key != "name"}
    return True
