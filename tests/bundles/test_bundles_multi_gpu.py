"""multi_gpu_train.json: two processes under torchrun on CPU (gloo) train a tiny network."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from bundle_helpers import BUNDLE_NAMES, bundle_run, copy_bundle, train_overrides


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_two_process_training(name: str, tmp_path: Path, dataset_dir: Path) -> None:
    root = copy_bundle(name, tmp_path)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    overrides = {**train_overrides(name, dataset_dir, iterations=4), "backend": "gloo"}
    proc = bundle_run(["train.json", "multi_gpu_train.json"], root, overrides, launcher=launcher)
    log = proc.stdout + proc.stderr
    assert log.count("Engine run finished") >= 2  # both processes trained to the end
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert state and not any(k.startswith("module.") for k in state)  # DDP wrapper stripped
    full = torch.load(root / "runs" / "checkpoint_final.pt", weights_only=True)
    assert full["trainer"]["iteration"] == 4
    if name == "tat_allinone":  # the loss's own parameters are trained (and synchronised) too
        assert any(k.startswith("sigma_estimator.") for k in full["loss"])
