"""The GPU check's CPU dry run (``python -m monai_tat.benchmarks gpu-check --device cpu --quick``):
every code path of the check at tiny sizes, so the script is known to work before a GPU runs it."""

from __future__ import annotations

import json

from monai_tat.benchmarks.__main__ import main as benchmarks_main


def test_gpu_check_dry_run_on_cpu(tmp_path, capsys):
    status = benchmarks_main(["gpu-check", "--device", "cpu", "--quick", "--json", str(tmp_path / "rows.json")])
    printed = capsys.readouterr().out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert status == 0, printed
    by_check = {}
    for row in rows:
        by_check.setdefault(row["check"], []).append(row)
    assert set(by_check) == {"cuda tests", "network", "oom retry", "ct volume", "bundle inference"}
    networks = by_check["network"]
    assert {r["setting"].split(" 32px")[0] for r in networks} == {"TAT shipped", "AMIR shipped"}
    assert all(r["status"] == "PASS" and r["slices_per_second"] > 0 for r in networks)
    fp32 = [r for r in networks if " fp32 " in r["setting"]]
    assert fp32 and all(r["max_abs_diff"] == 0.0 and r["drift_db"] == 0.0 for r in fp32)
    assert by_check["ct volume"][0]["status"] == "PASS"
    # What needs a GPU says so instead of passing silently.
    assert by_check["oom retry"][0]["status"] == "skip" and "CUDA" in by_check["oom retry"][0]["note"]
    assert by_check["cuda tests"][0]["status"] == "skip"
    assert "GPU check on CPU" in printed and printed.count("PASS") == len(networks) + 1
