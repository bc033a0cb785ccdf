"""Faults users meet, through the command line: each ends with exit 2 (or 130 / 143) and one line on
stderr, and leaves no file under the final name and no temporary beside it.

Full disks are simulated in-process by image writers that write too little (what ITK's NIfTI writer
does on a full disk, without raising) and by Python writers that raise ENOSPC; the real full disk
is exercised on a small tmpfs in ``tests/io/test_io_atomic.py``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
from collections import namedtuple
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from monai_tat.cli import main
from monai_tat.io.atomic import _HOST

_Usage = namedtuple("_Usage", "total used free")


def _one_line(capsys, rc: int, *words: str, status: int = 2) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == status, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("monai-tat: "), err
    for word in words:
        assert word.lower() in err.lower(), err
    return err


def _names(folder: Path) -> list[str]:
    """Every entry, hidden ones (temporaries) included."""
    return sorted(p.name for p in folder.iterdir())


def _restore(source: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["restore", str(source), str(out), "--model", str(checkpoint), "--task", "ct", "--device", "cpu",
            "--quiet", *extra]


def _full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """SimpleITK writes a fraction of each file and raises nothing; the disk reports no space left."""
    real_write = sitk.WriteImage

    def short_write(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 3)

    monkeypatch.setattr(sitk, "WriteImage", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(24576, 24576, 0))


# 1. full disk --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_full_disk_restore_leaves_nothing(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch, suffix):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _full_disk(monkeypatch)
    rc = main(_restore(ct_file, out_dir / f"x{suffix}", tat_checkpoint))
    _one_line(capsys, rc, "disk full", f"x{suffix}", "nothing written")
    assert _names(out_dir) == []


def test_truncated_write_without_full_disk_is_still_refused(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _full_disk(monkeypatch)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: _Usage(1 << 40, 0, 1 << 40))
    rc = main(_restore(ct_file, out_dir / "x.nii.gz", tat_checkpoint))
    _one_line(capsys, rc, "incomplete", "x.nii.gz", "nothing written")
    assert _names(out_dir) == []


def test_full_disk_preview_png(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch):
    from PIL import Image

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", no_space)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc = main(_restore(ct_file, out_dir / "x.nii.gz", tat_checkpoint, "--preview", str(out_dir / "x.png")))
    _one_line(capsys, rc, "disk full", "x.png")
    assert [n for n in _names(out_dir) if "partial" in n or n == "x.png"] == []


def test_full_disk_demo_leaves_no_volume(tmp_path, capsys, monkeypatch):
    from monai_tat.inference.engine import slice_loop as engine

    _full_disk(monkeypatch)
    monkeypatch.setattr(engine, "forward", lambda model, batch, *a: batch.clone())  # no network time
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--task", "pet", "--size", "48", "--slices", "1", "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("monai-tat: error: disk full writing"), err
    assert _names(out) == []


def test_full_disk_evaluate_csv(tmp_path, ct_file, capsys, monkeypatch):
    import csv

    class NoSpaceWriter:
        def __init__(self, *args, **kwargs):
            pass

        def writeheader(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(csv, "DictWriter", NoSpaceWriter)
    rc = main(["evaluate", str(ct_file), str(ct_file), "--task", "ct", "--csv", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "disk full writing" in err and len(err.splitlines()) == 1, err
    assert _names(tmp_path) == ["ct.nii.gz", "tiny_tat.pt"] or _names(tmp_path) == ["ct.nii.gz"]


# 2. NaN in metrics --------------------------------------------------------------------------


def _with_nan(source: Path, target: Path, index: tuple) -> Path:
    image = nib.load(str(source))
    data = image.get_fdata().astype(np.float32)
    data[index] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), str(target))
    return target


@pytest.mark.parametrize(
    ("where", "index", "slice_number"),
    [("prediction", (slice(None), slice(None), 2), 2), ("prediction", (3, 4, 1), 1), ("reference", (5, 5, 0), 0)],
    ids=["nan-slice", "nan-voxel", "nan-in-reference"],
)
def test_evaluate_refuses_nan(tmp_path, ct_file, capsys, where, index, slice_number):
    broken = _with_nan(ct_file, tmp_path / "broken.nii.gz", index)
    pred, ref = (broken, ct_file) if where == "prediction" else (ct_file, broken)
    csv_path = tmp_path / "scores.csv"
    rc = main(["evaluate", str(pred), str(ref), "--task", "ct", "--csv", str(csv_path)])
    _one_line(capsys, rc, "broken.nii.gz", "NaN", f"slice {slice_number}")
    assert not csv_path.exists()


# 3. lying header ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_claiming_huge_volume_is_refused_before_allocation(tmp_path, tat_checkpoint, capsys, suffix,
                                                                   monkeypatch):
    import monai_tat.io.volume as volume

    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 4))
    header.set_data_dtype(np.float32)
    raw = header.binaryblock + b"\0" * 4 + b"\0" * 1024
    source = tmp_path / f"liar{suffix}"
    if suffix == ".nii.gz":
        import gzip

        source.write_bytes(gzip.compress(raw))
        monkeypatch.setattr(volume, "available_memory_bytes", lambda: 8 * 10**9)  # any machine smaller than 29 GB
    else:
        source.write_bytes(raw)
    out = tmp_path / "out.nii.gz"
    rc = main(_restore(source, out, tat_checkpoint))
    _one_line(capsys, rc, "liar", "30000x30000x4", "truncated" if suffix == ".nii" else "memory")
    assert not out.exists()


# 4. simulate: half a dataset, split fractions ------------------------------------------------


def _simulate(inputs: list[Path], out: Path, *extra: str) -> list[str]:
    return ["simulate", *map(str, inputs), "--task", "ct", "--out", str(out), "--quiet", "--dose-fraction", "0.5",
            *extra]


def test_simulate_with_a_bad_input_leaves_nothing_and_can_be_rerun(tmp_path, capsys):
    from cli_data import write_ct

    good = [write_ct(tmp_path / f"in{k}.nii.gz", shape=(16, 16, 2), seed=k) for k in range(3)]
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b not an image" * 10)
    out = tmp_path / "pairs"
    rc = main(_simulate([good[0], good[1], bad, good[2]], out))
    _one_line(capsys, rc, "bad.nii.gz")
    assert not out.exists()
    assert not [n for n in _names(tmp_path) if "partial" in n]
    rc = main(_simulate(good, out))
    assert rc == 0, capsys.readouterr().err
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["numTraining"] + datalist["numValidation"] + datalist["numTest"] == 3
    assert sorted(p.name for p in (out / "lq").iterdir()) == ["in0.nii.gz", "in1.nii.gz", "in2.nii.gz"]


def test_simulate_into_existing_folder_with_a_bad_input_changes_nothing(tmp_path, capsys):
    from cli_data import write_ct

    good = write_ct(tmp_path / "in0.nii.gz", shape=(16, 16, 2))
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc = main(_simulate([good, tmp_path / "missing.nii.gz"], out))
    _one_line(capsys, rc, "missing.nii.gz")
    assert _names(out) == ["notes.txt"]


@pytest.mark.parametrize("split", [("0.5", "0.5", "0.5"), ("0.2", "0.1", "0.1")])
def test_simulate_split_must_add_up_to_one(tmp_path, ct_file, capsys, split):
    out = tmp_path / "pairs"
    rc = main(_simulate([ct_file], out, "--split", *split))
    _one_line(capsys, rc, "--split", "add up to 1")
    assert not out.exists()


# 6. checks before work ----------------------------------------------------------------------


def test_unwritable_output_is_refused_before_reading(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch):
    import monai_tat.inference.files as files

    def no_reading(*args, **kwargs):
        raise AssertionError("the input was read before the output was checked")

    monkeypatch.setattr(files, "read_volume", no_reading)
    rc = main(_restore(ct_file, Path("/proc/restored.nii.gz"), tat_checkpoint))
    _one_line(capsys, rc, "/proc", "not writable")


def test_second_demo_refuses_before_loading_a_model(tmp_path, capsys, monkeypatch):
    import monai_tat.inference as inference

    out = tmp_path / "demo"
    out.mkdir()
    (out / "ct_low_quality.nii.gz").write_bytes(b"earlier run")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(inference, "load_model", no_loading)
    rc = main(["demo", "--out", str(out), "--task", "ct", "--device", "cpu"])
    _one_line(capsys, rc, "ct_low_quality.nii.gz", "exists", "--overwrite")
    assert (out / "ct_low_quality.nii.gz").read_bytes() == b"earlier run"


# 7. noise on stderr -------------------------------------------------------------------------


def test_empty_folder_is_one_line(tmp_path, tat_checkpoint, capfd):
    folder = tmp_path / "empty"
    folder.mkdir()
    rc = main(_restore(folder, tmp_path / "o.nii.gz", tat_checkpoint))
    err = capfd.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("monai-tat: error: "), err
    assert "gdcm" not in err.lower() and "warning" not in err.lower(), err


def test_amp_on_cpu_is_one_warning_line(tmp_path, ct_file, tat_checkpoint, capfd):
    out = tmp_path / "o.nii.gz"
    rc = main(_restore(ct_file, out, tat_checkpoint, "--amp", "bf16"))
    err = capfd.readouterr().err.strip()
    assert rc == 0 and out.exists()
    assert err.splitlines() == ["monai-tat: warning: mixed precision bf16 is only used on CUDA; running in float32 on cpu"]


# 8. SIGTERM and kill -9 ---------------------------------------------------------------------


@pytest.mark.parametrize("when", ["restoring", "writing"])
def test_sigterm_is_cancelled_with_nothing_written(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch, when):
    from monai_tat.inference.engine import slice_loop as engine

    if when == "restoring":
        def terminated(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("SIGTERM did not stop the restoration")

        monkeypatch.setattr(engine, "forward", terminated)
    else:
        real_write = sitk.WriteImage

        def write_then_terminated(image, path, *args, **kwargs):
            real_write(image, path, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGTERM)

        monkeypatch.setattr(sitk, "WriteImage", write_then_terminated)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    previous = signal.getsignal(signal.SIGTERM)
    rc = main(_restore(ct_file, out_dir / "o.nii.gz", tat_checkpoint))
    _one_line(capsys, rc, "cancelled; no output was written", status=143)
    assert _names(out_dir) == []
    assert signal.getsignal(signal.SIGTERM) == previous


def test_temporary_of_a_killed_run_is_removed_by_the_next(tmp_path, ct_file, tat_checkpoint, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dead_pid = 2**22 + 12345  # above Linux's pid_max default: no such process
    stale = out_dir / f".o.nii.gz.{_HOST}-{dead_pid}-0123abcd.partial.nii.gz"
    stale.write_bytes(b"half a volume")
    rc = main(_restore(ct_file, out_dir / "o.nii.gz", tat_checkpoint))
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "removed 1 temporary file(s)" in err
    assert _names(out_dir) == ["o.nii.gz"]
