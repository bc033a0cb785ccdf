"""``monai-tat restore FOLDER|LIST|DATALIST OUT``: one model load, manifest, resume, failures, parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_data import write_ct
from monai.data import MetaTensor

import monai_tat.inference.batch as batch
from monai_tat.cli import main
from monai_tat.io.provenance import weights_sha256
from monai_tat.io import write_volume


def _write(path: Path, volume: np.ndarray) -> Path:
    affine = np.diag([0.9, 0.9, 2.0, 1.0])
    return write_volume(MetaTensor(torch.from_numpy(volume.astype(np.float32)), affine=torch.as_tensor(affine)), path)


@pytest.fixture
def cases_folder(tmp_path: Path) -> Path:
    """Five volumes of mixed tasks (two CT, PET in SUV, MRI signal) and one corrupt file, plus a note."""
    folder = tmp_path / "studies"
    folder.mkdir()
    rng = np.random.default_rng(1)
    write_ct(folder / "ct_a.nii.gz", seed=1)
    write_ct(folder / "ct_b.nrrd", seed=2)
    _write(folder / "pet_c.nii.gz", np.abs(rng.normal(1.5, 0.8, (16, 16, 3))) + 0.01)  # SUV, not integers
    _write(folder / "mri_d.mha", np.round(rng.uniform(0, 800, (16, 16, 3))))  # integer signal
    (folder / "bad_e.nii.gz").write_bytes(b"this is not an image")
    (folder / "notes.md").write_text("not a case")
    return folder


@pytest.fixture
def load_counter(monkeypatch) -> list[str]:
    """Every model load of a run; restoring one case must never load the model again."""
    loads: list[str] = []
    real_load = batch.load_model

    def counting_load(spec, device="cpu"):
        loads.append(str(spec))
        return real_load(spec, device)

    def forbidden(*args, **kwargs):
        raise AssertionError("a case loaded the model again")

    monkeypatch.setattr(batch, "load_model", counting_load)
    monkeypatch.setattr("monai_tat.inference.files.load_model", forbidden)
    monkeypatch.setattr("monai_tat.inference.engine.network.load_model", forbidden)
    return loads


def _manifest(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_one_load_manifest_failure_and_resume(tmp_path, cases_folder, tat_checkpoint, load_counter, capsys):
    out = tmp_path / "restored"
    args = ["restore", str(cases_folder), str(out), "--model", str(tat_checkpoint), "--device", "cpu", "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert load_counter == [str(tat_checkpoint)]
    assert "1 of 5 cases failed" in captured.err and "bad_e.nii.gz" in captured.err
    assert "restored 4 of 5 cases" in captured.out

    rows = _manifest(out / "manifest.jsonl")
    assert [Path(r["input"]).name for r in rows] == ["bad_e.nii.gz", "ct_a.nii.gz", "ct_b.nrrd", "mri_d.mha",
                                                     "pet_c.nii.gz"]
    by_name = {Path(r["input"]).name: r for r in rows}
    assert by_name["bad_e.nii.gz"]["status"] == "failed" and "cannot read" in by_name["bad_e.nii.gz"]["error"]
    assert {by_name[n]["task"] for n in ("ct_a.nii.gz", "ct_b.nrrd")} == {"ct"}
    assert by_name["pet_c.nii.gz"]["task"] == "pet" and by_name["mri_d.mha"]["task"] == "mri"
    from monai_tat.inference import load_model

    digest = weights_sha256(load_model(tat_checkpoint))
    for name in ("ct_a.nii.gz", "ct_b.nrrd", "mri_d.mha", "pet_c.nii.gz"):
        row = by_name[name]
        assert row["status"] == "done" and row["error"] is None and row["seconds"] > 0
        assert row["weights_sha256"] == digest and row["network"] == "TAT" and row["model"] == str(tat_checkpoint)
        assert Path(row["output"]).is_file() and Path(row["output"]).parent == out
    assert not (out / "bad_e.nii.gz").exists()
    assert sorted(p.name for p in out.iterdir()) == ["ct_a.nii.gz", "ct_b.nii.gz", "manifest.jsonl",
                                                     "mri_d.nii.gz", "pet_c.nii.gz"]

    # A rerun without --skip-existing refuses before doing anything.
    assert main(args) == 2 and "exist already" in capsys.readouterr().err
    # --skip-existing: finished outputs untouched, only the failed case is tried again.
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert main([*args, "--skip-existing"]) == 1
    captured = capsys.readouterr()
    assert "restored 0 of 5 cases" in captured.out and "4 skipped, 1 failed" in captured.out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == stamps
    assert [r for r in _manifest(out / "manifest.jsonl") if r["status"] == "done"] == \
        [r for r in rows if r["status"] == "done"]  # earlier rows kept as they were
    # With the corrupt file gone there is nothing left to do: the model is not even loaded.
    (cases_folder / "bad_e.nii.gz").unlink()
    load_counter.clear()
    assert main([*args, "--skip-existing"]) == 0
    assert load_counter == [] and "restored 0 of 4 cases" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == stamps


def test_parts_cover_every_case_once(tmp_path, cases_folder, tat_checkpoint, load_counter, capsys):
    (cases_folder / "bad_e.nii.gz").unlink()
    write_ct(cases_folder / "ct_f.nii.gz", seed=6)
    out = tmp_path / "restored"
    base = ["restore", str(cases_folder), str(out), "--model", str(tat_checkpoint), "--device", "cpu", "--quiet",
            "--num-parts", "2"]
    for part in ("0", "1"):
        assert main([*base, "--part-id", part]) == 0
    parts = [_manifest(out / f"manifest.part-{k}-of-2.jsonl") for k in (0, 1)]
    inputs = [[Path(r["input"]).name for r in rows] for rows in parts]
    assert sorted(inputs[0] + inputs[1]) == sorted(p.name for p in cases_folder.iterdir() if p.suffix != ".md")
    assert set(inputs[0]).isdisjoint(inputs[1]) and abs(len(inputs[0]) - len(inputs[1])) <= 1
    assert all(r["status"] == "done" for rows in parts for r in rows)
    assert load_counter == [str(tat_checkpoint)] * 2  # one load per part (per machine)
    assert main([*base, "--part-id", "2"]) == 2 and "part id must be from 0 to 1" in capsys.readouterr().err


def test_list_file_and_datalist(tmp_path, tat_checkpoint, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_ct(data / "one.nii.gz", seed=1)
    write_ct(data / "two.nii.gz", seed=2)
    listing = tmp_path / "cases.txt"
    listing.write_text("# inputs\ndata/one.nii.gz\n\ndata/two.nii.gz\n")
    common = ["--model", str(tat_checkpoint), "--device", "cpu", "--quiet"]
    assert main(["restore", str(listing), str(tmp_path / "from_list"), *common, "--format", "mha"]) == 0
    assert sorted(p.name for p in (tmp_path / "from_list").iterdir()) == ["manifest.jsonl", "one.mha", "two.mha"]

    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"testing": [{"image": "data/one.nii.gz", "task": "ct"},
                                                {"image": "data/two.nii.gz"}]}))
    assert main(["restore", str(datalist), str(tmp_path / "from_datalist"), *common]) == 0
    rows = _manifest(tmp_path / "from_datalist" / "manifest.jsonl")
    assert [r["task"] for r in rows] == ["ct", "ct"] and all(r["status"] == "done" for r in rows)
    assert main(["restore", str(datalist), str(tmp_path / "x"), *common, "--datalist-key", "validation"]) == 2
    assert "validation" in capsys.readouterr().err


def test_two_cases_with_one_output_name_are_refused(tmp_path, tat_checkpoint, capsys):
    folder = tmp_path / "studies"
    folder.mkdir()
    write_ct(folder / "same.nii.gz")
    write_ct(folder / "same.nrrd")
    assert main(["restore", str(folder), str(tmp_path / "out"), "--model", str(tat_checkpoint)]) == 2
    assert "both be written as 'same'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_output_file_name_for_several_inputs_is_refused(tmp_path, cases_folder, tat_checkpoint, capsys):
    rc = main(["restore", str(cases_folder), str(tmp_path / "restored.nii.gz"), "--model", str(tat_checkpoint)])
    assert rc == 2 and "output must be a folder" in capsys.readouterr().err
    assert not (tmp_path / "restored.nii.gz").exists()
    rc = main(["restore", str(cases_folder), str(cases_folder / "restored"), "--model", str(tat_checkpoint)])
    assert rc == 2 and "inside the input folder" in capsys.readouterr().err
    assert not (cases_folder / "restored").exists()
    rc = main(["restore", str(cases_folder), str(tmp_path / "out"), "--model", str(tat_checkpoint),
               "--patient-weight", "70"])
    assert rc == 2 and "--patient-weight describe one scan" in capsys.readouterr().err


def test_ctrl_c_keeps_finished_cases_and_resumes(tmp_path, cases_folder, tat_checkpoint, monkeypatch, capsys):
    (cases_folder / "bad_e.nii.gz").unlink()
    real_restore = batch.restore_file
    calls = []

    def interrupted_third(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_restore(*args, **kwargs)

    monkeypatch.setattr(batch, "restore_file", interrupted_third)
    out = tmp_path / "restored"
    args = ["restore", str(cases_folder), str(out), "--model", str(tat_checkpoint), "--device", "cpu", "--quiet"]
    assert main(args) == 130
    assert "cancelled after 2 of 4 cases" in capsys.readouterr().err
    rows = _manifest(out / "manifest.jsonl")
    assert [r["status"] for r in rows] == ["done", "done"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "ct_a.nii.gz", "ct_b.nii.gz", "manifest.jsonl"]
    monkeypatch.setattr(batch, "restore_file", real_restore)
    assert main([*args, "--skip-existing"]) == 0
    assert "restored 2 of 4 cases" in capsys.readouterr().out
    assert [r["status"] for r in _manifest(out / "manifest.jsonl")] == ["done"] * 4
