"""``monai-tat evaluate``: per-image and mean metrics, CSV, paired comparison, matched folders, errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from cli_data import write_ct

from monai_tat.cli import main
from monai_tat.io import read_volume
from monai_tat.metrics import paired_comparison, slice_metrics, summarize


def test_single_files_with_csv(tmp_path, capsys):
    ref = write_ct(tmp_path / "ref.nii.gz", noise=0.0)
    pred = write_ct(tmp_path / "pred.nii.gz", seed=1, noise=20.0)
    rc = main(["evaluate", str(pred), str(ref), "--task", "ct", "--csv", str(tmp_path / "m.csv")])
    out = capsys.readouterr().out
    assert rc == 0
    expected = summarize(slice_metrics(read_volume(pred).numpy(), read_volume(ref).numpy(), "ct", axis=2))
    assert f"{expected['psnr']:.3f}" in out and f"{expected['ssim']:.4f}" in out
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["pred.nii.gz", "mean"]
    assert float(rows[1]["psnr"]) == pytest.approx(expected["psnr"])
    assert float(rows[1]["rmse"]) == pytest.approx(expected["rmse"])
    assert rows[1]["slices"] == "3"


def test_folders_matched_by_name_with_baseline(tmp_path, capsys):
    for folder in ("pred", "ref", "base"):
        (tmp_path / folder).mkdir()
    for n in range(2):
        write_ct(tmp_path / "ref" / f"case{n}.nii.gz", seed=n, noise=0.0)
        write_ct(tmp_path / "pred" / f"case{n}.mha", seed=10 + n, noise=10.0)  # suffix may differ
        write_ct(tmp_path / "base" / f"case{n}.nrrd", seed=20 + n, noise=40.0)
    write_ct(tmp_path / "ref" / "unused.nii.gz")  # references without prediction are ignored
    rc = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--task", "ct",
               "--baseline", str(tmp_path / "base"), "--csv", str(tmp_path / "m.csv"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    pooled_pred, pooled_base = [], []
    for n in range(2):
        ref = read_volume(tmp_path / "ref" / f"case{n}.nii.gz").numpy()
        pooled_pred += list(slice_metrics(read_volume(tmp_path / "pred" / f"case{n}.mha").numpy(), ref, "ct")["psnr"])
        pooled_base += list(slice_metrics(read_volume(tmp_path / "base" / f"case{n}.nrrd").numpy(), ref, "ct")["psnr"])
    comparison = paired_comparison(pooled_pred, pooled_base)
    assert comparison.n == 6 and comparison.mean_difference > 0
    assert f"{comparison.mean_difference:+.4f} dB" in out and f"p = {comparison.p_value:.3g}" in out
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == ["case0", "case1", "mean"]
    assert float(rows[2]["baseline_psnr"]) == pytest.approx(np.mean(pooled_base))


@pytest.mark.parametrize("case", ["missing_ref", "unmatched", "shape", "mixed", "csv_exists", "no_task"])
def test_evaluate_errors(tmp_path, capsys, case):
    (tmp_path / "pred").mkdir()
    (tmp_path / "ref").mkdir()
    write_ct(tmp_path / "pred" / "a.nii.gz")
    write_ct(tmp_path / "ref" / "b.nii.gz")
    args = {
        "missing_ref": [str(tmp_path / "pred" / "a.nii.gz"), str(tmp_path / "nope.nii.gz"), "--task", "ct"],
        "unmatched": [str(tmp_path / "pred"), str(tmp_path / "ref"), "--task", "ct"],
        "shape": [str(tmp_path / "pred" / "a.nii.gz"), str(write_ct(tmp_path / "small.nii.gz", shape=(8, 8, 3))),
                  "--task", "ct"],
        "mixed": [str(tmp_path / "pred"), str(tmp_path / "ref" / "b.nii.gz"), "--task", "ct"],
        "csv_exists": [str(tmp_path / "pred" / "a.nii.gz"), str(tmp_path / "ref" / "b.nii.gz"), "--task", "ct",
                       "--csv", str(tmp_path / "ref" / "b.nii.gz")],
        "no_task": [str(tmp_path / "pred" / "a.nii.gz"), str(tmp_path / "ref" / "b.nii.gz")],
    }[case]
    words = {"missing_ref": "not found", "unmatched": "no reference of the same name: a", "shape": "shape",
             "mixed": "all as files or all as folders", "csv_exists": "overwrite the input", "no_task": "--task"}[case]
    rc = main(["evaluate", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "m.csv").exists()
