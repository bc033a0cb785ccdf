"""``monai-tat restore``: a real run, and every user error as one line, exit 2, no output file."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from PIL import Image

from monai_tat.cli import main
from monai_tat.io import read_volume


def _restore(*args: str) -> list[str]:
    return ["restore", *args, "--device", "cpu"]


def _assert_user_error(capsys, rc: int, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("monai-tat: error: ")
    for word in words:
        assert word.lower() in err.lower(), err
    return err


def test_restore_writes_volume_with_geometry_and_preview(tmp_path, ct_file, tat_checkpoint, capsys):
    out, preview = tmp_path / "out.nrrd", tmp_path / "preview.png"
    rc = main(_restore(str(ct_file), str(out), "--model", str(tat_checkpoint), "--batch-size", "2",
                       "--preview", str(preview)))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "(ct, TAT, cpu)" in captured.out  # the task was inferred from the HU values
    assert "3/3" in captured.err  # the tqdm bar reached all slices
    before, after = read_volume(ct_file), read_volume(out)
    assert after.shape == before.shape
    np.testing.assert_allclose(after.affine.numpy(), before.affine.numpy(), atol=1e-5)
    assert not np.allclose(after.numpy(), before.numpy())
    with Image.open(preview) as png:
        assert png.size == (16 + 2 + 16, 16) and png.mode == "L"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ct.nii.gz", "out.nrrd", "preview.png", "tiny_tat.pt"]


def test_existing_output_needs_overwrite(tmp_path, ct_file, tat_checkpoint, capsys):
    out = tmp_path / "out.nii.gz"
    out.write_bytes(b"previous")
    rc = main(_restore(str(ct_file), str(out), "--model", str(tat_checkpoint), "--task", "ct"))
    _assert_user_error(capsys, rc, "exists", "--overwrite")
    assert out.read_bytes() == b"previous"
    rc = main(_restore(str(ct_file), str(out), "--model", str(tat_checkpoint), "--task", "ct", "--overwrite", "--quiet"))
    assert rc == 0 and read_volume(out).shape == (16, 16, 3)


def _four_d(tmp_path: Path) -> Path:
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 2), np.float32), np.eye(4)), tmp_path / "dyn.nii.gz")
    return tmp_path / "dyn.nii.gz"


def _nan(tmp_path: Path) -> Path:
    data = np.full((8, 8, 2), -1000.0, np.float32)
    data[2, 2, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii.gz")
    return tmp_path / "nan.nii.gz"


def _junk(tmp_path: Path) -> Path:
    (tmp_path / "junk.nii.gz").write_bytes(b"\x1f\x8b not really gzip" * 20)
    return tmp_path / "junk.nii.gz"


def _empty(tmp_path: Path) -> Path:
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    return tmp_path / "empty.nii.gz"


@pytest.mark.parametrize(
    ("make_input", "words"),
    [
        (lambda tmp: tmp / "missing.nii.gz", ("not found", "missing.nii.gz")),
        (_junk, ("cannot read", "junk.nii.gz")),
        (_four_d, ("4D",)),
        (_empty, ("empty",)),
        (_nan, ("NaN",)),
    ],
    ids=["missing", "unreadable", "4d", "empty", "nan"],
)
def test_bad_inputs(tmp_path, tat_checkpoint, capsys, make_input, words):
    source = make_input(tmp_path)
    out = tmp_path / "out" / "restored.nii.gz"
    out.parent.mkdir()
    rc = main(_restore(str(source), str(out), "--model", str(tat_checkpoint), "--task", "ct"))
    _assert_user_error(capsys, rc, *words)
    assert list(out.parent.iterdir()) == []


def test_unknown_task(tmp_path, ct_file, tat_checkpoint, capsys):
    rc = main(_restore(str(ct_file), str(tmp_path / "o.nii.gz"), "--model", str(tat_checkpoint), "--task", "xray"))
    _assert_user_error(capsys, rc, "--task", "xray")
    assert not (tmp_path / "o.nii.gz").exists()


def test_task_that_cannot_be_inferred(tmp_path, tat_checkpoint, capsys):
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(0, 1, (8, 8, 2)).astype(np.float32), np.eye(4)),
             tmp_path / "unit.nii.gz")
    rc = main(_restore(str(tmp_path / "unit.nii.gz"), str(tmp_path / "o.nii.gz"), "--model", str(tat_checkpoint)))
    _assert_user_error(capsys, rc, "--task")
    assert not (tmp_path / "o.nii.gz").exists()


def test_checkpoint_of_another_architecture(tmp_path, ct_file, capsys):
    unet = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,))
    torch.save(unet.state_dict(), tmp_path / "unet.pt")
    rc = main(_restore(str(ct_file), str(tmp_path / "o.nii.gz"), "--model", str(tmp_path / "unet.pt")))
    _assert_user_error(capsys, rc, "unet.pt", "not a TAT, AMIR or Restormer")
    assert not (tmp_path / "o.nii.gz").exists()


def test_demo_weights_not_shipped_or_model_missing(tmp_path, ct_file, capsys, monkeypatch):
    from monai_tat.inference import models

    monkeypatch.setattr(models, "WEIGHTS_DIR", tmp_path / "no_weights")
    rc = main(_restore(str(ct_file), str(tmp_path / "o.nii.gz"), "--model", "amir"))
    _assert_user_error(capsys, rc, "no trained demo weights", "--model PATH")
    rc = main(_restore(str(ct_file), str(tmp_path / "o.nii.gz"), "--model", str(tmp_path / "nope.pt")))
    _assert_user_error(capsys, rc, "not found", "nope.pt")
    assert not (tmp_path / "o.nii.gz").exists()


def test_output_equal_to_input_is_refused(tmp_path, ct_file, tat_checkpoint, capsys):
    before = ct_file.read_bytes()
    rc = main(_restore(str(ct_file), str(tmp_path / "." / "ct.nii.gz"), "--model", str(tat_checkpoint), "--overwrite"))
    _assert_user_error(capsys, rc, "overwrite the input")
    assert ct_file.read_bytes() == before


@pytest.mark.parametrize("where", ["missing_folder", "file_as_folder", "read_only"])
def test_output_folder_that_cannot_be_written(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch, where):
    import os

    if where == "missing_folder":
        out = tmp_path / "not_there" / "o.nii.gz"
    elif where == "file_as_folder":
        (tmp_path / "plain_file").write_text("x")
        out = tmp_path / "plain_file" / "o.nii.gz"
    else:
        (tmp_path / "locked").mkdir()
        out = tmp_path / "locked" / "o.nii.gz"
        real_access = os.access  # tests may run as root, where chmod does not stop writes
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == out.parent else real_access(p, m))
    rc = main(_restore(str(ct_file), str(out), "--model", str(tat_checkpoint), "--task", "ct"))
    _assert_user_error(capsys, rc, str(out.parent.name))
    assert not out.exists()


def test_bad_output_suffix_and_preview(tmp_path, ct_file, tat_checkpoint, capsys):
    rc = main(_restore(str(ct_file), str(tmp_path / "o.png"), "--model", str(tat_checkpoint)))
    _assert_user_error(capsys, rc, ".nii.gz")
    rc = main(_restore(str(ct_file), str(tmp_path / "o.mha"), "--model", str(tat_checkpoint),
                       "--preview", str(tmp_path / "p.jpg")))
    _assert_user_error(capsys, rc, ".png")
    rc = main(_restore(str(ct_file), str(tmp_path / "o.mha"), "--model", str(tat_checkpoint), "--batch-size", "0"))
    _assert_user_error(capsys, rc, "batch-size")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "tiny_tat.pt"]


def test_interrupt_mid_volume_leaves_no_output(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch):
    from monai_tat.inference.engine import slice_loop as engine

    real_forward, calls = engine.forward, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(engine, "forward", interrupted)
    out = tmp_path / "o.nii.gz"
    rc = main(_restore(str(ct_file), str(out), "--model", str(tat_checkpoint), "--task", "ct", "--batch-size", "1",
                       "--preview", str(tmp_path / "p.png")))
    assert rc == 130 and "cancelled" in capsys.readouterr().err
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "tiny_tat.pt"]


def test_safetensors_model_with_config(tmp_path, ct_file, capsys):
    from safetensors.torch import save_file

    from monai_tat.networks import AMIR, network_config

    amir = AMIR(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
    save_file(amir.state_dict(), str(tmp_path / "amir.safetensors"),
              metadata={"network_config": json.dumps(network_config(amir))})
    rc = main(_restore(str(ct_file), str(tmp_path / "o.mha"), "--model", str(tmp_path / "amir.safetensors"),
                       "--axis", "2", "--quiet"))
    assert rc == 0 and "AMIR" in capsys.readouterr().out
    assert read_volume(tmp_path / "o.mha").shape == (16, 16, 3)


def test_kspace_consistency_and_self_ensemble_options(tmp_path, tat_checkpoint, capsys):
    """MRI: the measured k-space band is given back by default (a truncated input), not with "off";
    --self-ensemble changes the result; "on" for a CT is one clear error."""
    from monai_tat.demo.samples import make_sample

    sample = make_sample("mri", size=64, slices=2, seed=3)
    mri = tmp_path / "mri.nii.gz"
    nib.save(nib.Nifti1Image(sample.low_quality.numpy(), np.eye(4)), str(mri))
    outputs = {}
    for name, extra in {"auto": [], "off": ["--kspace-consistency", "off"],
                        "ensemble": ["--self-ensemble", "--kspace-consistency", "off"]}.items():
        out = tmp_path / f"{name}.nii.gz"
        rc = main(_restore(str(mri), str(out), "--model", str(tat_checkpoint), "--task", "mri", "--quiet", *extra))
        printed = capsys.readouterr()
        assert rc == 0, printed.err
        assert ("k-space consistency" in printed.out) == (name == "auto")
        assert ("self-ensemble" in printed.out) == (name == "ensemble")
        outputs[name] = read_volume(out).numpy()
    assert not np.allclose(outputs["auto"], outputs["off"])
    assert not np.allclose(outputs["ensemble"], outputs["off"])
    # the consistency step makes the restored slices' own 4x truncation closer to the input
    from monai_tat.transforms import KSpaceTruncation

    def misfit(volume):
        return float(np.abs(np.asarray(KSpaceTruncation(4.0)(volume[None]))[0] - sample.low_quality.numpy()).mean())

    assert misfit(outputs["auto"]) < misfit(outputs["off"])
    ct = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 2), np.float32), np.eye(4)), str(ct))
    rc = main(_restore(str(ct), str(tmp_path / "x.nii.gz"), "--model", str(tat_checkpoint), "--task", "ct",
                       "--kspace-consistency", "on"))
    _assert_user_error(capsys, rc, "MRI", "--kspace-consistency")
    assert not (tmp_path / "x.nii.gz").exists()


def test_cpu_compile_switch_reaches_the_library(tmp_path, ct_file, tat_checkpoint, capsys, monkeypatch):
    from monai_tat.inference import cpu_speed

    monkeypatch.setenv(cpu_speed.MODE_ENV, "on")  # restored after the test
    seen = []
    original = cpu_speed.prepare_cpu_network

    def spy(*args, **kwargs):
        seen.append(cpu_speed.cpu_compile_mode())
        return original(*args, **kwargs)

    monkeypatch.setattr("monai_tat.inference.engine.network.prepare_cpu_network", spy)
    rc = main(_restore(str(ct_file), str(tmp_path / "out.nii.gz"), "--model", str(tat_checkpoint),
                       "--cpu-compile", "off"))
    assert rc == 0, capsys.readouterr().err
    assert seen == ["off"]
    assert main(_restore(str(ct_file), str(tmp_path / "b.nii.gz"), "--cpu-compile", "fast")) == 2
    assert "--cpu-compile" in capsys.readouterr().err
