"""Verified atomic writes: a file is published only once read back; a full disk leaves nothing.

The disk-full cases run twice: with writers that write too little or raise ENOSPC (everywhere), and
on a real 24 KB tmpfs (``mount`` as root, else inside ``unshare -rm``), where SimpleITK's own C++
writers meet the full disk; the tmpfs test is skipped only where neither can mount.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from monai_tat.errors import UserInputError
from monai_tat.io.atomic import (
    _HOST,
    IncompleteFileError,
    atomic_publish_dir,
    atomic_write,
    check_writable_folder,
    check_output_path,
    quick_image_check,
    remove_stale_partials,
    verify_file,
)

REPO = Path(__file__).resolve().parents[2]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _truncating(write, fraction: float = 0.5):
    """A writer that writes the file, then loses its end (what a full disk does to ITK's writers)."""

    def short(tmp: Path) -> None:
        write(tmp)
        size = tmp.stat().st_size
        with open(tmp, "r+b") as f:
            f.truncate(int(size * fraction))

    return short


def _volume_writer(tmp: Path) -> None:
    from monai_tat.io import write_volume

    rng = np.random.default_rng(0)
    write_volume(rng.normal(size=(20, 20, 4)).astype(np.float32), tmp, overwrite=True)


def _png_writer(tmp: Path) -> None:
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp, format="PNG")


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii", "v.mha", "v.nrrd"])
def test_truncated_volume_is_not_published(tmp_path, name):
    with pytest.raises(IncompleteFileError, match=f"writing .*{name} produced an incomplete file.*nothing written"):
        atomic_write(tmp_path / name, _truncating(_volume_writer))
    assert _names(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("p.png", _png_writer),
        ("d.json", lambda tmp: tmp.write_text(json.dumps({"training": [1, 2, 3]}))),
        ("c.csv", lambda tmp: tmp.write_text("")),
        ("w.pt", lambda tmp: __import__("torch").save({"w": __import__("torch").zeros(1000)}, tmp)),
    ],
)
def test_truncated_files_of_each_type_are_not_published(tmp_path, name, write):
    (tmp_path / "ok").mkdir()
    if name != "c.csv":
        assert atomic_write(tmp_path / "ok" / name, write).exists()  # the complete file passes
    with pytest.raises(IncompleteFileError):
        atomic_write(tmp_path / name, _truncating(write, 0.6) if name != "c.csv" else write)
    assert _names(tmp_path) == ["ok"]


def test_zero_byte_volume_is_not_published(tmp_path):
    with pytest.raises(IncompleteFileError):
        atomic_write(tmp_path / "v.nii.gz", lambda tmp: tmp.write_bytes(b""))
    assert _names(tmp_path) == []


def test_enospc_from_a_python_writer_is_disk_full(tmp_path):
    def no_space(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(b"part")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserInputError, match="disk full writing .*x.json: nothing written"):
        atomic_write(tmp_path / "x.json", no_space)
    assert _names(tmp_path) == []


def test_extra_verify_callable_can_refuse(tmp_path):
    def refuse(tmp: Path) -> None:
        raise UserInputError("checksum differs")

    with pytest.raises(UserInputError, match="checksum differs"):
        atomic_write(tmp_path / "x.txt", lambda tmp: tmp.write_text("x"), verify=refuse)
    assert _names(tmp_path) == []


def test_verify_file_accepts_complete_files(tmp_path):
    for name in ("v.nii.gz", "v.nii", "v.mha"):
        _volume_writer(tmp_path / name)
        verify_file(tmp_path / name)
        assert quick_image_check(tmp_path / name) is None


def test_quick_check_finds_truncated_nifti(tmp_path):
    for name in ("v.nii.gz", "v.nii"):
        _truncating(_volume_writer, 0.7)(tmp_path / name)
        assert quick_image_check(tmp_path / name)


def test_unwritable_folder_is_refused_by_a_probe(tmp_path):
    with pytest.raises(UserInputError, match="not writable"):
        check_output_path("/proc/out.nii.gz")
    with pytest.raises(UserInputError, match="cannot create|not writable"):
        check_writable_folder("/proc/restored")
    assert check_writable_folder(tmp_path / "a" / "b").is_dir()
    assert _names(tmp_path / "a" / "b") == []  # the probe is gone


# stale temporaries ---------------------------------------------------------------------------


def test_stale_temporaries_are_removed_live_ones_kept(tmp_path):
    dead = tmp_path / f".x.nii.gz.{_HOST}-{2**22 + 7}-0123abcd.partial.nii.gz"
    live = tmp_path / f".y.nii.gz.{_HOST}-{os.getpid()}-0123abcd.partial.nii.gz"
    legacy_old = tmp_path / ".z.nii.gz.89abcdef.partial.nii.gz"
    legacy_new = tmp_path / ".w.nii.gz.89abcdef.partial.nii.gz"
    dead_dir = tmp_path / f".pairs.{_HOST}-{2**22 + 8}-0123abcd.partial"
    user_file = tmp_path / ".hidden_user_file"
    for path in (dead, live, legacy_old, legacy_new, user_file):
        path.write_bytes(b"x")
    dead_dir.mkdir()
    (dead_dir / "lq").mkdir()
    old = time.time() - 2 * 3600
    os.utime(legacy_old, (old, old))
    removed = remove_stale_partials(tmp_path)
    assert sorted(p.name for p in removed) == sorted([dead.name, legacy_old.name, dead_dir.name])
    assert _names(tmp_path) == sorted([live.name, legacy_new.name, user_file.name])


def test_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    code = (
        "import os, sys; from monai_tat.io.atomic import atomic_write\n"
        "def write(tmp):\n"
        "    tmp.write_bytes(b'half')\n"
        "    os.kill(os.getpid(), 9)\n"
        f"atomic_write({str(tmp_path / 'x.json')!r}, write)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9
    leftovers = [n for n in _names(tmp_path) if ".partial" in n]
    assert len(leftovers) == 1 and not (tmp_path / "x.json").exists()
    atomic_write(tmp_path / "y.json", lambda tmp: tmp.write_text("{}"))
    assert _names(tmp_path) == ["y.json"]


# folders -------------------------------------------------------------------------------------


def _dataset(tmp: Path) -> None:
    (tmp / "lq").mkdir()
    _volume_writer(tmp / "lq" / "a.nii.gz")
    (tmp / "datalist.json").write_text(json.dumps({"training": []}))


def test_publish_new_folder_in_one_step(tmp_path):
    out = atomic_publish_dir(tmp_path / "pairs", _dataset)
    assert _names(out) == ["datalist.json", "lq"] and _names(tmp_path) == ["pairs"]


def test_publish_failure_leaves_nothing(tmp_path):
    def half(tmp: Path) -> None:
        _dataset(tmp)
        raise UserInputError("input 3 cannot be read")

    with pytest.raises(UserInputError, match="input 3"):
        atomic_publish_dir(tmp_path / "pairs", half)
    assert _names(tmp_path) == []
    with pytest.raises(IncompleteFileError):
        atomic_publish_dir(tmp_path / "pairs", lambda tmp: (_dataset(tmp), _truncating(_volume_writer)(tmp / "b.nii")))
    assert _names(tmp_path) == []


def test_publish_into_existing_folder_keeps_other_files_and_refuses_clashes(tmp_path):
    out = tmp_path / "pairs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    atomic_publish_dir(out, _dataset)
    assert _names(out) == ["datalist.json", "lq", "notes.txt"]
    before = (out / "lq" / "a.nii.gz").read_bytes()
    with pytest.raises(UserInputError, match="exists"):
        atomic_publish_dir(out, _dataset)
    assert (out / "lq" / "a.nii.gz").read_bytes() == before
    assert _names(out) == ["datalist.json", "lq", "notes.txt"]
    atomic_publish_dir(out, _dataset, overwrite=True)
    assert _names(out) == ["datalist.json", "lq", "notes.txt"]


# a real full disk ----------------------------------------------------------------------------


def _mount_command() -> list[str] | None:
    """How to run a shell script that may mount a tmpfs: directly as root, else in a user namespace."""
    if shutil.which("mount") is None:
        return None
    if os.geteuid() == 0:
        return ["sh", "-c"]
    if shutil.which("unshare") and subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rm", "sh", "-c"]
    return None


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_real_full_tmpfs_restore(tmp_path, suffix):
    launcher = _mount_command()
    if launcher is None:
        pytest.skip("cannot mount a tmpfs here (not root, no user namespaces); the simulated disk-full tests ran")
    sys.path.insert(0, str(REPO / "tests" / "cli"))
    from cli_data import write_ct

    source = write_ct(tmp_path / "in.nii.gz", shape=(64, 64, 4))
    small = tmp_path / "small"
    small.mkdir()
    out = small / f"x{suffix}"
    # the tiny network: restoring costs little; the input is 64 KB of float32, the disk 24 KB
    script = (
        f"mount -t tmpfs -o size=24k tmpfs {small} || exit 97; "
        f"{sys.executable} -m monai_tat.cli restore {source} {out} --model {_tiny_checkpoint(tmp_path)} --task ct "
        f"--device cpu --quiet; rc=$?; ls -A {small} > {tmp_path / 'left.txt'}; umount {small}; exit $rc"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([*launcher, script], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode == 97:
        pytest.skip(f"mount refused: {proc.stderr.strip()}")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert err == [f"monai-tat: error: disk full writing {out}: nothing written; free space in {small} or choose "
                   "another output folder"], proc.stderr
    assert (tmp_path / "left.txt").read_text().split() == []


def _tiny_checkpoint(folder: Path) -> Path:
    import torch

    from monai_tat.networks import TAT

    path = folder / "tiny.pt"
    if not path.exists():
        torch.save(TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).state_dict(), path)
    return path
