"""Datalists of paired volumes and the resume point of a training run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from monai_tat.errors import UserInputError
from monai_tat.training import latest_checkpoint, load_datalist

def test_load_datalist_resolves_paths_and_checks_tasks(paired_dir: Path) -> None:
    items = load_datalist(paired_dir / "datalist.json", "training")
    assert [d["task"] for d in items] == ["ct", "pet", "mri"]
    assert all(Path(d["image"]).is_absolute() and Path(d["image"]).exists() for d in items)
    assert load_datalist(paired_dir / "datalist.json", "missing", required=False) == []
    with pytest.raises(UserInputError, match="no 'missing' items"):
        load_datalist(paired_dir / "datalist.json", "missing")
    bad = paired_dir / "bad.json"
    bad.write_text(json.dumps({"training": [{"image": "a.nii.gz", "label": "b.nii.gz", "task": "xray"}]}))
    with pytest.raises(UserInputError, match="xray"):
        load_datalist(bad)
    with pytest.raises(UserInputError, match="datalist not found"):
        load_datalist(paired_dir / "nope.json")


def test_several_datalists_are_one_list(paired_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other" / "datalist.json"
    other.parent.mkdir()
    other.write_text(json.dumps({"training": [{"image": "x_lq.nii.gz", "label": "x_hq.nii.gz", "task": "PET"}]}))
    first = load_datalist(paired_dir / "datalist.json", "training")[0]
    for name, field in (("x_lq.nii.gz", "image"), ("x_hq.nii.gz", "label")):  # listed files must exist
        shutil.copy(first[field], other.parent / name)
    items = load_datalist([paired_dir / "datalist.json", other], "training")
    assert [d["task"] for d in items] == ["ct", "pet", "mri", "pet"]
    assert items[-1]["image"] == str((other.parent / "x_lq.nii.gz").resolve())  # relative to its own folder


def test_latest_checkpoint_is_the_newest(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None and latest_checkpoint(tmp_path / "missing") is None
    old, new = tmp_path / "checkpoint_iteration=10.pt", tmp_path / "checkpoint_final.pt"
    old.write_bytes(b"0")
    new.write_bytes(b"1")
    (tmp_path / "model.pt").write_bytes(b"2")
    os.utime(old, (1, 1))
    assert latest_checkpoint(tmp_path) == str(new)
