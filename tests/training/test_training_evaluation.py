"""Datalist evaluation (per-slice CSV, per-task summary) and restoration through the inference engine."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.io import read_volume
from monai_tat.metrics import slice_metrics
from monai_tat.training import DatalistEvaluator, load_datalist, output_path_for, restore_datalist


class _Identity(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def test_evaluator_reports_paper_metrics_per_slice_and_task(paired_dir: Path, tmp_path: Path) -> None:
    items = load_datalist(paired_dir / "datalist.json", "validation")
    evaluator = DatalistEvaluator(items, tmp_path / "eval", device="cpu")
    summary = evaluator.evaluate(_Identity(), tag="check")
    assert set(summary) == {"ct", "pet", "mri"}
    with open(tmp_path / "eval" / "check_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and set(rows[0]) == {"image", "label", "task", "slice", "psnr", "ssim", "rmse"}
    # The identity network restores LQ unchanged, so the metrics are those of LQ against HQ.
    for item in items:
        expected = slice_metrics(read_volume(item["image"]), read_volume(item["label"]), item["task"], axis=2)
        got = [r for r in rows if r["task"] == item["task"]]
        np.testing.assert_allclose([float(r["psnr"]) for r in got], expected["psnr"], rtol=1e-5)
        np.testing.assert_allclose([float(r["rmse"]) for r in got], expected["rmse"], rtol=1e-4)
        assert summary[item["task"]]["psnr"] == pytest.approx(float(np.mean(expected["psnr"])), rel=1e-5)
    with open(tmp_path / "eval" / "check_summary.csv", newline="") as f:
        assert [r["task"] for r in csv.DictReader(f)] == ["ct", "pet", "mri"]
    score = evaluator(_Identity(), tag="again")
    assert score == pytest.approx(np.mean([s["psnr"] for s in summary.values()]), rel=1e-6)


def test_restore_datalist_writes_physical_units_with_geometry(paired_dir: Path, tmp_path: Path) -> None:
    items = load_datalist(paired_dir / "datalist.json", "testing", require_label=False)
    outputs = restore_datalist(_Identity(), items, tmp_path / "out", base_dir=paired_dir, device="cpu")
    assert outputs[0] == tmp_path / "out" / "ct" / "case0_lq_restored.nii.gz"
    for item, out in zip(items, outputs):
        source, restored = read_volume(item["image"]), read_volume(out)
        torch.testing.assert_close(restored.affine, source.affine)
        torch.testing.assert_close(restored.as_tensor(), source.as_tensor(), rtol=1e-4, atol=1e-3)
    with pytest.raises(UserInputError, match="same output"):
        restore_datalist(_Identity(), items[:1] * 2, tmp_path / "out2", device="cpu")


def test_output_path_keeps_relative_folders(tmp_path: Path) -> None:
    out = output_path_for(tmp_path / "L067" / "quarter.nii.gz", tmp_path / "o", base_dir=tmp_path)
    assert out == tmp_path / "o" / "L067" / "quarter_restored.nii.gz"
    assert output_path_for("/x/scan.mha", "/o", suffix=".mha").name == "scan_restored.mha"
