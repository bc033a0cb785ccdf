"""The reproducible training script runs end to end for a few iterations (the full run is not in CI)."""

from __future__ import annotations

import json

import numpy as np
import torch

from monai_tat.demo.train import CropSampler, build_bank, main, normalise_pair, simulate_pair
from monai_tat.inference import load_model
from monai_tat.io import read_checkpoint


def test_quick_training_writes_loadable_weights(tmp_path):
    assert main(["--out", str(tmp_path), "--quick", "--model", "tat", "--iterations", "2"]) == 0
    weights = tmp_path / "tat_demo.safetensors"
    state, config = read_checkpoint(weights)
    assert config["name"] == "TAT" and config["dim"] == 8
    info = json.loads((tmp_path / "tat_demo_metrics.json").read_text())
    assert info["iterations"] == 2
    assert set(info["heldout_metrics"]) == {"ct", "pet", "mri"}
    model = load_model(str(weights))
    out = model(torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32) and torch.isfinite(out).all()


def test_bank_cache_round_trip_and_balanced_batches(tmp_path):
    cache = tmp_path / "bank.npz"
    assert main(["--out", str(tmp_path), "--quick", "--bank-only", "--cache", str(cache)]) == 0
    bank = build_bank(2, 0, size_scale=0.25)
    from monai_tat.demo.train import _load_bank

    loaded = _load_bank(cache)
    assert set(loaded) == {"ct", "pet", "mri"}
    np.testing.assert_array_equal(loaded["mri"][1][1], bank["mri"][1][1])  # same seed, same data
    lq, hq = CropSampler(loaded, crop=16, per_task=2, seed=0).batch()
    assert lq.shape == hq.shape == (6, 1, 16, 16)


def test_normalisation_matches_the_engine_ranges():
    rng = np.random.default_rng(0)
    lq, hq, params = simulate_pair("ct", rng, 64)
    a, b = normalise_pair("ct", lq, hq)
    assert 0.0 <= a.min() and a.max() <= 1.0
    np.testing.assert_allclose(b, np.clip((hq + 1024.0) / 4096.0, 0, 1), atol=1e-5)
    lq, hq, _ = simulate_pair("mri", rng, 64)
    a, _ = normalise_pair("mri", lq, hq)
    lo, hi = np.percentile(a, (0.5, 99.5))
    assert abs(lo) < 1e-4 and abs(hi - 1.0) < 1e-4  # percentiles of the low-quality image
