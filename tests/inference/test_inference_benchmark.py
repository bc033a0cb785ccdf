"""The benchmark entry point: its figures are internally consistent and really measured.

Not timing tests: the assertions are about what the figures mean (medians of the runs, ratios to
the copy time, max |diff| computed against the closed-form result of a network that does nothing, memory seen by the probe), and about
the engine's memory, which is deterministic enough to bound.
"""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from monai_tat.benchmarks import __main__ as entry
from monai_tat.benchmarks.engine_speed import engine_figures
from monai_tat.benchmarks.measuring import PeakMemory
from monai_tat.benchmarks.volumes import ct_like_volume


def test_engine_json_figures_are_consistent_and_printed(tmp_path, capsys):
    out = tmp_path / "engine.json"
    assert entry.main(["engine", "--size", "48", "40", "6", "--repeats", "3", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["volume_shape"] == [48, 40, 6] and figures["volume_bytes"] == 48 * 40 * 6 * 4
    (row,) = figures["rows"]
    assert len(row["runs"]) == 3 and row["seconds"] == statistics.median(row["runs"])
    assert row["ms_per_slice"] == pytest.approx(1000 * row["seconds"] / 6)
    assert row["volume_copies"] == pytest.approx(row["seconds"] / row["copy_seconds"])
    assert row["engine_seconds"] == statistics.median(row["engine_runs"])
    assert all(0 < e <= t for e, t in zip(row["engine_runs"], row["runs"]))
    assert row["engine_copies"] == pytest.approx(row["engine_seconds"] / row["copy_seconds"])
    assert row["peak_volumes"] == pytest.approx(row["peak_extra_bytes"] / figures["volume_bytes"])
    assert row["max_abs_diff"] <= 1e-6 * 3072 and row["max_rel_diff"] <= 1e-6
    table = capsys.readouterr().out
    assert f"{row['seconds']:9.3f}" in table and f"{row['engine_copies']:8.1f}" in table


def test_max_diff_is_measured_against_the_identity_restoration():
    from monai_tat.inference import restore_volume

    def off_by_half(*args, **kwargs):
        restored = restore_volume(*args, **kwargs)
        restored.as_tensor()[3, 4, 1] += 0.5
        return restored

    volume = ct_like_volume((24, 20, 3))
    row = engine_figures(volume, "ct", "cpu", batch_size=2, repeats=1, restore=off_by_half)
    assert row["max_abs_diff"] == pytest.approx(0.5, abs=1e-3)
    assert engine_figures(volume, "ct", "cpu", batch_size=2, repeats=1)["max_abs_diff"] == 0.0


def test_peak_memory_sees_an_allocation():
    with PeakMemory() as peak:
        block = np.ones(40 * 2**20 // 4, dtype=np.float32)  # 40 MiB, touched
        del block
    assert peak.method != "none" and peak.extra_bytes >= 36 * 2**20


_ENGINE_PEAK_SCRIPT = """
import json, sys
import numpy as np, torch
from monai.data import MetaTensor
from monai_tat.benchmarks.engine_speed import engine_figures
from monai_tat.benchmarks.volumes import synthetic_volume
task = sys.argv[1]
volume = synthetic_volume(task.split("_")[0], (256, 256, 96))  # 24 MiB
kspace = None
if task == "mri_truncated":  # the k-space consistency step runs too
    from monai_tat.inference import restore_volume
    from monai_tat.transforms import KSpaceTruncation
    volume = MetaTensor(torch.from_numpy(np.asarray(KSpaceTruncation(4.0)(volume.numpy()[None]))[0]),
                        meta={"modality": "MR"})
    record = restore_volume(volume[:, :, :8], torch.nn.Identity(), "mri", device="cpu").meta["restoration"]
    kspace = record["kspace_consistency"]["applied"]
row = engine_figures(volume, task.split("_")[0], "cpu", batch_size=8, repeats=2)
print(json.dumps({"peak_volumes": row["peak_volumes"], "memory_method": row["memory_method"], "kspace": kspace}))
"""


@pytest.mark.parametrize("task", ["ct", "mri", "mri_truncated"])
def test_engine_peak_memory_is_at_most_three_volumes(task):
    # In a fresh interpreter, as the benchmark runs: the resident-set peak of a process that has
    # already run hundreds of tests includes heap pages its earlier allocations left fragmented.
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _ENGINE_PEAK_SCRIPT, task], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    row = json.loads(done.stdout.strip().splitlines()[-1])
    if task == "mri_truncated":
        assert row["kspace"] is True
    assert row["peak_volumes"] <= 3.0, row  # the plain path takes more than 5


def test_models_subcommand_and_dispatch(capsys, monkeypatch):
    volume = ct_like_volume((12, 10, 2))
    assert volume.shape == (12, 10, 2) and float(volume.min()) < -900 and float(volume.max()) > 0
    assert entry.main(["models", "--size", "16", "16", "2", "--tiny", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("volume (16, 16, 2)")
    assert [line.split()[0] for line in lines[1:]] == ["TAT", "AMIR"] and all("s/volume" in l for l in lines[1:])
    from monai_tat.benchmarks import networks_speed

    seen = []
    monkeypatch.setattr(networks_speed, "main", lambda argv: seen.append(argv))
    assert entry.main(["networks", "--sizes", "64"]) == 0 and seen == [["--sizes", "64"]]
    assert entry.main(["unknown"]) == 2
