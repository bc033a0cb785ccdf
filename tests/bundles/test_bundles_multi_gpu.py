"""multi_gpu_train.json: two processes under torchrun on CPU (gloo) train a tiny network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bundle_helpers import BUNDLE_NAMES, bundle_run, copy_bundle, train_overrides


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_two_process_training(name: str, tmp_path: Path, dataset_dir: Path) -> None:
    root = copy_bundle(name, tmp_path)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    overrides = {**train_overrides(name, dataset_dir, iterations=3), "backend": "gloo", "val_interval": 0}
    proc = bundle_run(["train.json", "multi_gpu_train.json"], root, overrides, launcher=launcher)
    log = proc.stdout + proc.stderr
    assert "training on rank 0 of 2" in log and "training on rank 1 of 2" in log
    assert "iteration 3/3" in log
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert state and not any(k.startswith("module.") for k in state)  # DDP wrapper stripped
