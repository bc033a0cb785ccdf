"""Both bundles as standard MONAI workflows on a tiny synthetic dataset in the documented datalist
format: property checks, then ``python -m monai.bundle run`` of train.json (a tiny network),
evaluate.json and inference.json on what it trained, resuming, and ``monai-tat restore --model``
on the trained bundle folder."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigWorkflow

from bundle_helpers import BUNDLE_NAMES, NETWORK_NAMES, TINY, bundle_run, cli_args, copy_bundle, run_cli, train_overrides

from monai_tat.inference import load_model, restore_volume
from monai_tat.io import read_volume


def _workflow(root: Path, config: str, workflow_type: str, dataset_dir: Path) -> ConfigWorkflow:
    workflow = ConfigWorkflow(
        config_file=str(root / "configs" / config), meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"), workflow_type=workflow_type,
        bundle_root=str(root), dataset_dir=str(dataset_dir),
    )
    workflow.initialize()
    return workflow


@pytest.mark.parametrize("name", BUNDLE_NAMES)
@pytest.mark.parametrize("config, workflow_type", [("inference.json", "infer"), ("evaluate.json", "infer"),
                                                    ("train.json", "train")])
def test_standard_workflow_properties(name: str, config: str, workflow_type: str, tmp_path: Path,
                                      dataset_dir: Path) -> None:
    workflow = _workflow(copy_bundle(name, tmp_path, weights=True), config, workflow_type, dataset_dir)
    assert workflow.check_properties() == []
    inferer = workflow.inferer if workflow_type == "infer" else workflow.val_inferer
    assert type(inferer).__name__ == "RestorationInferer"


@pytest.fixture(scope="module", params=BUNDLE_NAMES)
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, dataset_dir: Path):
    """(bundle name, working copy of the bundle after 4 training iterations of a tiny network, CLI output)."""
    name = request.param
    root = copy_bundle(name, tmp_path_factory.mktemp(name))
    proc = bundle_run("train.json", root, train_overrides(name, dataset_dir))
    return name, root, proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_saves_plain_ema_weights_and_checkpoints(trained) -> None:
    name, root, log = trained
    assert "val_psnr" in log and "train_loss" in log
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    net = load_model(root)  # the bundle folder, as `monai-tat restore --model` and Slicer read it
    assert type(net).__name__ == NETWORK_NAMES[name] and net.config["dim"] == TINY[name]["network_def#dim"]
    assert set(state) == set(net.state_dict())
    full = torch.load(root / "runs" / "checkpoint_final.pt", weights_only=True)
    assert {"network", "ema", "optimizer", "lr_scheduler", "loss", "trainer"} <= set(full)
    assert full["trainer"]["iteration"] == 4


@pytest.mark.slow
def test_rerunning_the_same_command_resumes(trained, dataset_dir: Path, tmp_path: Path) -> None:
    name, root, _ = trained
    resumed = Path(shutil.copytree(root, tmp_path / name))
    proc = bundle_run("train.json", resumed, train_overrides(name, dataset_dir, iterations=6))
    assert "Restored all variables from" in proc.stdout + proc.stderr
    full = torch.load(resumed / "runs" / "checkpoint_final.pt", weights_only=True)
    assert full["trainer"]["iteration"] == 6  # 4 before, 2 more: not 6 from scratch
    assert full["lr_scheduler"]["last_epoch"] == 6


@pytest.mark.slow
def test_evaluate_reports_paper_metrics_and_paired_test(trained, dataset_dir: Path) -> None:
    name, root, _ = trained
    proc = bundle_run("evaluate.json", root, {"dataset_dir": dataset_dir, **TINY[name]})
    assert "psnr" in proc.stdout + proc.stderr
    summary = json.loads((root / "eval" / "evaluation_summary.json").read_text())
    assert set(summary) == {"ct", "pet", "mri"}
    for task, s in summary.items():
        assert s["slices"] == 3 and s["restored_vs_input"]["psnr"]["n"] == 3
        assert s["restored_vs_input"]["psnr"]["mean_difference"] == pytest.approx(
            s["restored"]["psnr"] - s["input"]["psnr"])
        assert 0.0 <= s["restored_vs_input"]["psnr"]["p_value"] <= 1.0
    with open(root / "eval" / "evaluation_images.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["task"] for r in rows) == ["ct", "mri", "pet"]


def _bundle_vs_cpu_atol(source: torch.Tensor) -> float:
    """Bound on |bundle - CPU restore|. The bundle runs on cuda:0 when there is one, where cuDNN's
    convolutions default to TF32 (a 10-bit mantissa): up to about 1e-3 of the intensity range off the
    CPU's float32, so 2e-3 of the range there; 1e-3 (units of the image) on the CPU."""
    if not torch.cuda.is_available():
        return 1e-3
    return 2e-3 * float(source.max() - source.min())


@pytest.mark.slow
def test_inference_writes_physical_units_with_the_input_geometry(trained, dataset_dir: Path) -> None:
    name, root, _ = trained
    bundle_run("inference.json", root, {"dataset_dir": dataset_dir, **TINY[name]})
    net = load_model(root)
    for task in ("ct", "pet", "mri"):
        source = read_volume(dataset_dir / task / "lq.nii.gz")
        restored = read_volume(root / "eval" / "restored" / task / "lq_restored.nii.gz")
        assert restored.shape == source.shape
        torch.testing.assert_close(restored.affine, source.affine)
        # The engine's own restoration (CLI, Slicer) of the same file gives the same image in HU / SUV / MRI units.
        expected = restore_volume(source, net, task, device="cpu")
        torch.testing.assert_close(restored.as_tensor(), expected.as_tensor(), rtol=1e-4, atol=_bundle_vs_cpu_atol(source))
        assert not torch.allclose(restored.as_tensor(), source.as_tensor())


@pytest.mark.slow
def test_model_zoo_export_and_monai_tat_restore_of_the_trained_bundle(trained, dataset_dir: Path, tmp_path: Path) -> None:
    name, root, _ = trained
    export = ["-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", "models/model.ts", "--ckpt_file",
              "models/model.pt", "--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json",
              *cli_args(TINY[name])]
    run_cli([sys.executable, *export], root)
    scripted = torch.jit.load(str(root / "models" / "model.ts"))
    for shape in ((1, 1, 128, 128), (1, 1, 72, 96)):  # scripted, not traced: any slice size
        x = torch.rand(*shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), load_model(root)(x), rtol=1e-4, atol=1e-4)
    out = tmp_path / "restored.nii.gz"
    run_cli(["monai-tat", "restore", str(dataset_dir / "ct" / "lq.nii.gz"), str(out), "--model", str(root),
             "--task", "ct", "--device", "cpu", "--quiet"], tmp_path)
    source = read_volume(dataset_dir / "ct" / "lq.nii.gz")
    restored = read_volume(out)
    assert restored.shape == source.shape
    torch.testing.assert_close(restored.affine, source.affine)
    expected = restore_volume(source, load_model(root), "ct", device="cpu")
    torch.testing.assert_close(restored.as_tensor(), expected.as_tensor(), rtol=1e-4, atol=1e-3)
