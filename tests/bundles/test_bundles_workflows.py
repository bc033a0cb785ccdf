"""Both bundles end to end with MONAI's CLI on a tiny synthetic dataset and a tiny network:
train.json, then evaluate.json and inference.json on its checkpoint, then a traced export."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ckpt_export

from bundle_helpers import BUNDLE_NAMES, TINY, bundle_run, copy_bundle, train_overrides

from monai_tat.inference import load_model, restore_volume
from monai_tat.io import read_volume
from monai_tat.metrics import METRIC_NAMES


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module", params=BUNDLE_NAMES)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path):
    """(bundle name, working copy of the bundle after 4 training iterations, CLI output)."""
    name = request.param
    root = copy_bundle(name, tmp_path_factory.mktemp(name))
    proc = bundle_run("train.json", root, train_overrides(name, dataset_dir))
    return name, root, proc.stdout + proc.stderr


def test_train_saves_validated_checkpoint(trained, dataset_dir: Path) -> None:
    name, root, log = trained
    assert "iteration 4/4" in log
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    net = load_model(root / "models" / "model.pt")
    assert type(net).__name__ == {"tat_allinone": "TAT", "amir_allinone": "AMIR"}[name]
    assert net.config["dim"] == TINY[name]["network_def#dim"] and set(state) == set(net.state_dict())
    for iteration in (2, 4):
        summary = _read_csv(root / "eval" / "validation" / f"iteration_{iteration:07d}_summary.csv")
        assert [r["task"] for r in summary] == ["ct", "pet", "mri"]
        assert all(float(r["psnr"]) > 0 and int(r["n"]) == 3 for r in summary)


def test_evaluate_reports_per_task_and_per_slice(trained, dataset_dir: Path) -> None:
    name, root, _ = trained
    bundle_run("evaluate.json", root, {"dataset_dir": dataset_dir})
    summary = {r["task"]: r for r in _read_csv(root / "eval" / "evaluation_summary.csv")}
    rows = _read_csv(root / "eval" / "evaluation_metrics.csv")
    assert set(summary) == {"ct", "pet", "mri"} and len(rows) == 9
    # The saved checkpoint is the best validated one: evaluation on the same data reproduces its scores.
    rounds = [_read_csv(root / "eval" / "validation" / f"iteration_{i:07d}_summary.csv") for i in (2, 4)]
    best = max(rounds, key=lambda r: sum(float(x["psnr"]) for x in r))
    for row in best:
        for metric in METRIC_NAMES:
            assert float(summary[row["task"]][metric]) == pytest.approx(float(row[metric]), rel=1e-5)


def test_inference_writes_restored_volumes_with_geometry(trained, dataset_dir: Path) -> None:
    name, root, _ = trained
    bundle_run("inference.json", root, {"dataset_dir": dataset_dir})
    net = load_model(root / "models" / "model.pt")
    for task in ("ct", "pet", "mri"):
        source = read_volume(dataset_dir / task / "lq.nii.gz")
        restored = read_volume(root / "eval" / "restored" / task / "lq_restored.nii.gz")
        assert restored.shape == source.shape
        torch.testing.assert_close(restored.affine, source.affine)
        # Same engine as the CLI: restoring in-process with the checkpoint gives the same image.
        expected = restore_volume(source, net, task, device="cpu")
        torch.testing.assert_close(restored.as_tensor(), expected.as_tensor(), rtol=1e-4, atol=1e-3)
        assert not torch.allclose(restored.as_tensor(), source.as_tensor())  # the network did act


def test_traced_export_matches_the_network(trained) -> None:
    name, root, _ = trained
    configs = root / "configs"
    ckpt_export(
        net_id="network_def", filepath=str(root / "models" / "model.ts"), ckpt_file=str(root / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"), config_file=str(configs / "inference.json"), use_trace=True,
        **TINY[name],
    )
    extra = {"metadata.json": "", "inference.json": ""}
    traced = torch.jit.load(str(root / "models" / "model.ts"), _extra_files=extra)
    assert json.loads(extra["inference.json"])["network_def"]["_target_"].endswith(
        {"tat_allinone": "TAT", "amir_allinone": "AMIR"}[name]
    )
    net = load_model(root / "models" / "model.pt")
    x = torch.rand(1, 1, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x), rtol=1e-4, atol=1e-4)
