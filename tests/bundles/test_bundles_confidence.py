"""The bundles' ``confidence`` setting: off by default; ``--confidence True`` writes a confidence map
next to each prediction (own postfix, the prediction's grid, task units), the same map as
``monai-tat restore --confidence``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bundle_helpers import BUNDLE_NAMES, BUNDLES, copy_bundle
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_tat.demo.samples import make_sample
from monai_tat.inference import load_model
from monai_tat.inference.confidence import restore_with_confidence
from monai_tat.io import read_volume, write_volume


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_inference_configs_offer_the_confidence_map_off_by_default(name: str) -> None:
    config = ConfigParser.load_config_file(str(BUNDLES / name / "configs" / "inference.json"))
    assert config["confidence"] is False and config["confidence_postfix"] == "confidence"
    transforms = config["postprocessing"]["transforms"]
    mapping = next(t for t in transforms if t["_target_"].endswith("ConfidenceMapd"))
    assert mapping["enabled"] == "@confidence" and mapping["network"] == "@network"
    assert mapping["preprocessing"] == "@preprocessing" and mapping["confidence_key"] == "confidence"
    # the map is restored as the prediction is (same inferer settings) and written as it is
    assert mapping["kspace_consistency"] == "@inferer#kspace_consistency"
    save_pred, save_map = (next(t for t in transforms if t.get("keys") == key and t["_target_"] == "SaveImaged")
                           for key in ("pred", "confidence"))
    assert save_map["output_postfix"] == "@confidence_postfix" and save_map["allow_missing_keys"] is True
    assert {k: v for k, v in save_map.items() if k not in ("keys", "output_postfix", "allow_missing_keys")} == {
        k: v for k, v in save_pred.items() if k not in ("keys", "output_postfix")}
    assert transforms.index(mapping) < transforms.index(save_map)


def _infer(root: Path, data: Path, output: Path, **overrides) -> None:
    workflow = ConfigWorkflow(
        config_file=str(root / "configs" / "inference.json"), meta_file=str(root / "configs" / "metadata.json"),
        workflow_type="infer", bundle_root=str(root), dataset_dir=str(data), output_dir=str(output), **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()


@pytest.mark.slow
def test_confidence_true_writes_the_map_next_to_each_prediction(tmp_path: Path) -> None:
    root = copy_bundle("tat_allinone", tmp_path, weights=True)
    data = tmp_path / "data"
    data.mkdir()
    sample = make_sample("mri", size=64, slices=1)  # 4x k-space truncated: the map has both parts
    write_volume(sample.low_quality, data / "mri.nii.gz")
    (data / "datalist.json").write_text(json.dumps({"testing": [{"image": "mri.nii.gz", "task": "mri"}]}))

    _infer(root, data, tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["mri_restored.nii.gz"]

    _infer(root, data, tmp_path / "with_map", confidence=True)
    assert sorted(p.name for p in (tmp_path / "with_map").iterdir()) == ["mri_confidence.nii.gz", "mri_restored.nii.gz"]
    restored = read_volume(tmp_path / "with_map" / "mri_restored.nii.gz")
    confidence = read_volume(tmp_path / "with_map" / "mri_confidence.nii.gz")
    assert confidence.shape == restored.shape == sample.low_quality.shape
    torch.testing.assert_close(confidence.affine, restored.affine)
    # the map `monai-tat restore --confidence` writes: MRI intensity units, both parts
    _, expected = restore_with_confidence(read_volume(data / "mri.nii.gz"), load_model(root), "mri", device="cpu")
    assert len(expected.meta["confidence"]["parts"]) == 2
    torch.testing.assert_close(confidence.as_tensor(), expected.as_tensor(), rtol=1e-3, atol=0.05)
    assert float(confidence.max()) > 1.0 and float(confidence.min()) >= 0.0
