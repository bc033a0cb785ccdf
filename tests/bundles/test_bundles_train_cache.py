"""The training data set reads its cached volumes without copying them, and never changes them.

``train.json`` sets ``copy_cache: false`` (a whole-volume deep copy per patch made the loader, not
the network, set the pace of training). That is only safe while no random transform of
``train#preprocessing`` writes into its input: these tests draw many samples and check that every
cached volume is bit-for-bit what it was.
"""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser

from bundle_helpers import BUNDLE_NAMES, BUNDLES, write_pairs


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_train_dataset_does_not_copy_its_cache(name: str) -> None:
    config = json.loads((BUNDLES / name / "configs" / "train.json").read_text())
    assert config["train"]["dataset"]["copy_cache"] is False


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_random_transforms_leave_the_cached_volumes_unchanged(name: str, tmp_path) -> None:
    datalist = write_pairs(tmp_path, shape=(40, 32, 4))
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / name / "configs" / "train.json"))
    parser.update({"bundle_root": str(BUNDLES / name), "dataset_dir": str(tmp_path), "datalist": str(datalist),
                   "patch_size": [16, 16], "cache_workers": 1})
    dataset = parser.get_parsed_content("train#dataset")
    before = [{k: torch.as_tensor(v).clone() for k, v in item.items() if k in ("image", "label")}
              for item in dataset._cache]

    samples = [dataset[i % len(dataset)] for i in range(60)]

    assert all(s["image"].shape == (1, 16, 16) for s in samples)
    # the draws really are random crops, flips and rotations, not one patch over and over
    assert len({s["image"].sum().item() for s in samples[0::3]}) > 5
    for cached, original in zip(dataset._cache, before):
        for key, tensor in original.items():
            assert torch.equal(torch.as_tensor(cached[key]), tensor), f"{key} of a cached volume changed"


def test_loader_benchmark_prints_both_settings(tmp_path, capsys) -> None:
    from monai_tat.benchmarks.train_loader import main

    datalist = write_pairs(tmp_path, shape=(40, 32, 4))
    assert main(["--datalist", str(datalist), "--batches", "2", "--patch", "16", "--samples-per-task", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| True") or line.startswith("| False")]
    assert len(rows) == 2
    assert "the speed of copy_cache true" in rows[1]
