"""multi_gpu_train.json and multi_gpu_evaluate.json: two processes under torchrun.

On CPU the two processes talk over gloo (the configs pick it for a CPU device), so these tests run
on any machine. The ``cuda`` variants run the same commands on ``cuda:0`` and ``cuda:1`` with NCCL,
and skip only where fewer than two GPUs exist.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from bundle_helpers import BUNDLE_NAMES, bundle_run, copy_bundle, train_overrides

LAUNCHER = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
DEVICES = [
    pytest.param("cpu", id="cpu-gloo"),
    pytest.param("cuda", id="cuda-nccl", marks=pytest.mark.skipif(
        torch.cuda.device_count() < 2, reason=f"two processes need two GPUs, {torch.cuda.device_count()} present")),
]


def _device_overrides(device: str) -> dict:
    """CPU: every process on the CPU (gloo); CUDA: the configs' own ``cuda:$LOCAL_RANK`` (NCCL)."""
    return {"device": "$torch.device('cpu')"} if device == "cpu" else {}


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_two_process_training(name: str, device: str, tmp_path: Path, dataset_dir: Path) -> None:
    root = copy_bundle(name, tmp_path)
    overrides = {**train_overrides(name, dataset_dir, iterations=4), **_device_overrides(device)}
    proc = bundle_run(["train.json", "multi_gpu_train.json"], root, overrides, launcher=LAUNCHER)
    log = proc.stdout + proc.stderr
    assert log.count("Engine run finished") >= 2  # both processes trained to the end
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert state and not any(k.startswith("module.") for k in state)  # DDP wrapper stripped
    full = torch.load(root / "runs" / "checkpoint_final.pt", weights_only=True)
    assert full["trainer"]["iteration"] == 4
    if name == "tat_allinone":  # the loss's own parameters are trained (and synchronised) too
        assert any(k.startswith("sigma_estimator.") for k in full["loss"])


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_two_process_evaluation_writes_one_report_of_every_case(name: str, device: str, tmp_path: Path,
                                                                 dataset_dir: Path) -> None:
    """Each process scores its shard (rank 0: ct and mri, rank 1: pet); the report is one file set
    covering all three cases, equal to the single-process evaluation's."""
    root = copy_bundle(name, tmp_path, weights=True)
    overrides = {"dataset_dir": dataset_dir, **_device_overrides(device)}
    bundle_run(["evaluate.json", "multi_gpu_evaluate.json"], root, {**overrides, "output_dir": "eval_2"},
               launcher=LAUNCHER)
    bundle_run("evaluate.json", root, {"dataset_dir": dataset_dir, "output_dir": "eval_1",
                                       "device": "$torch.device('cpu')"})
    two = json.loads((root / "eval_2" / "evaluation_summary.json").read_text())
    one = json.loads((root / "eval_1" / "evaluation_summary.json").read_text())
    assert set(two) == {"ct", "pet", "mri"}
    for task in one:
        assert two[task]["slices"] == one[task]["slices"] == 3
        for metric, value in one[task]["restored"].items():
            assert two[task]["restored"][metric] == pytest.approx(value, rel=1e-4)
            assert two[task]["input"][metric] == pytest.approx(one[task]["input"][metric], rel=1e-6)
        assert two[task]["restored_vs_input"]["psnr"]["n"] == 3
    with open(root / "eval_2" / "evaluation_images.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["task"] for r in rows) == ["ct", "mri", "pet"]  # one row per case, none twice
    assert sorted(p.name for p in (root / "eval_2").iterdir()) == ["evaluation_images.csv", "evaluation_summary.json"]
