"""Dry runs of ``python -m monai_tat.benchmarks cpu-levers`` / ``cpu-volumes`` at tiny sizes: the figures
are the ones measured (medians of the rounds, differences against the eager output, totals from the
stated formula), and every fast path gives the eager output within the tolerance."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from torch import nn

from monai_tat.benchmarks import __main__ as entry
from monai_tat.benchmarks import cpu_levers
from monai_tat.inference.cpu_speed import TOLERANCE
from monai_tat.networks.blocks import TransformerBlock


def one_block_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), TransformerBlock(4, 1, 2.0), nn.Conv2d(4, 1, 3, padding=1)).eval()


def test_cpu_levers_dry_run_prints_and_writes_measured_figures(tmp_path, capsys):
    out = tmp_path / "levers.json"
    argv = ["cpu-levers", "--networks", "amir", "--size", "24", "20", "--levers", "eager", "jit-freeze", "jit-onednn",
            "--rounds", "2", "--json", str(out)]  # fmt: skip
    assert entry.main(argv) == 0
    figures = json.loads(out.read_text())
    rows = {row["lever"]: row for row in figures["rows"]}
    assert list(rows) == ["eager", "jit-freeze", "jit-onednn"] and figures["machine"]["threads"] == 2
    assert rows["eager"]["max_abs_diff_vs_eager"] == 0.0
    for row in rows.values():
        if row["error"]:  # a lever this platform cannot run is reported, never silently dropped
            assert row["lever"] == "jit-onednn" and row["seconds_per_slice"] is None
            continue
        assert row["size"] == [24, 20] and len(row["runs"]) == 2 and len(row["loads"]) == 2
        assert row["seconds_per_slice"] == statistics.median(row["runs"])
        assert row["max_abs_diff_vs_eager"] <= TOLERANCE
        assert row["speedup_vs_eager"] == pytest.approx(rows["eager"]["seconds_per_slice"] / row["seconds_per_slice"])
    table = capsys.readouterr().out
    assert "jit-freeze" in table and f"{rows['eager']['seconds_per_slice']:8.3f}" in table


@pytest.mark.slow
def test_compiled_levers_match_eager(monkeypatch):
    rows = cpu_levers.lever_rows("one-block", one_block_network(), 24, 20, ["aoti", "aoti-cached", "inductor"], rounds=1)
    by_lever = {row.lever: row for row in rows}
    for lever in ("aoti", "aoti-cached", "inductor"):
        assert by_lever[lever].error is None, by_lever[lever].error
        assert by_lever[lever].max_abs_diff_vs_eager <= TOLERANCE
    # the cached package loads in a fraction of the compile time
    assert by_lever["aoti-cached"].compile_seconds < by_lever["aoti"].compile_seconds


@pytest.mark.slow
def test_cpu_volumes_dry_run_derives_the_totals_from_its_measurements(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cpu_levers, "network_by_name", lambda name: one_block_network())
    out = tmp_path / "volumes.json"
    assert entry.main(["cpu-volumes", "--networks", "one", "--cases", "T:24x20x50", "--slices", "2",
                       "--json", str(out)]) == 0  # fmt: skip
    (row,) = json.loads(out.read_text())["rows"]
    assert row["shape"] == [24, 20, 50] and row["slices_timed"] == 2 and row["max_abs_diff"] <= TOLERANCE
    assert row["eager_total"] == pytest.approx(50 * row["eager_seconds_per_slice"])
    assert row["first_run_total"] == pytest.approx(row["compile_seconds"] + 50 * row["compiled_seconds_per_slice"])
    assert row["second_run_total"] == pytest.approx(row["load_seconds"] + 50 * row["compiled_seconds_per_slice"])
    assert row["load_seconds"] < row["compile_seconds"]
    assert "first run = compile + S x compiled s/slice" in capsys.readouterr().out


def test_cpu_levers_refuses_a_bad_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        entry.main(["cpu-levers", "--size", "1", "2", "3"])
    assert exit_info.value.code == 2 and "--size takes N or H W" in capsys.readouterr().err
