"""The PSNR-drift benchmark: fast modes scored against float32 on the demo samples (correctness, not time)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monai_tat.benchmarks import __main__ as entry
from monai_tat.benchmarks.quality_drift import measure_drift
from monai_tat.demo.samples import make_sample
from monai_tat.errors import UserInputError
from monai_tat.inference import restore_volume
from monai_tat.metrics.image_quality import psnr


def test_scripted_model_restores_with_no_drift_and_the_psnr_is_the_engines():
    rows = measure_drift("tat", modes=["script"], tasks=["ct", "mri"], size=64, slices=2)
    assert [(r.task, r.mode) for r in rows] == [("ct", "fp32"), ("ct", "script"), ("mri", "fp32"), ("mri", "script")]
    for row in rows:
        assert abs(row.drift_db) <= 1e-4 and row.max_abs_diff <= 1e-2  # HU / MR signal
    # the fp32 figure is the mean slice PSNR of a plain restore_volume call
    sample = make_sample("ct", size=64, slices=2)
    restored = restore_volume(sample.low_quality, "tat", task="ct", device="cpu").numpy()
    expected = np.mean([psnr(restored[..., k], sample.reference.numpy()[..., k], "ct") for k in range(2)])
    assert rows[0].psnr_db == pytest.approx(expected, abs=1e-6)
    assert rows[0].input_psnr_db < rows[0].psnr_db  # the demo weights restore the CT phantom


def test_half_precision_on_cpu_and_unknown_modes_are_refused():
    with pytest.raises(UserInputError, match="CUDA"):
        measure_drift("tat", modes=["bf16"], tasks=["ct"], size=32, slices=1)
    with pytest.raises(UserInputError, match="unknown mode"):
        measure_drift("tat", modes=["int8"], tasks=["ct"], size=32, slices=1)


def test_drift_subcommand_prints_and_writes_json(tmp_path, capsys):
    out = tmp_path / "drift.json"
    code = entry.main(["drift", "--tasks", "pet", "--size", "48", "--slices", "1", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "pet" in printed and "script" in printed and "drift dB" in printed
    figures = json.loads(out.read_text())
    assert [r["mode"] for r in figures["rows"]] == ["fp32", "script"]
    assert figures["rows"][0]["drift_db"] == 0.0
