"""``monai-tat restore --confidence``: the map beside the result, checked before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from monai_tat.cli import main
from monai_tat.inference import restore_volume
from monai_tat.inference.confidence import restore_with_confidence
from monai_tat.inference.models import load_model
from monai_tat.io import read_volume


def _restore(*args: str) -> list[str]:
    return ["restore", *args, "--device", "cpu"]


def test_confidence_map_is_written_beside_the_result(tmp_path: Path, ct_file: Path, tat_checkpoint: Path, capsys) -> None:
    out, confidence = tmp_path / "out.nii.gz", tmp_path / "confidence.nrrd"
    rc = main(_restore(str(ct_file), str(out), "--model", str(tat_checkpoint), "--confidence", str(confidence)))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "confidence map ->" in captured.out and "HU" in captured.out
    image, restored, spread = read_volume(ct_file), read_volume(out), read_volume(confidence)
    assert spread.shape == image.shape
    np.testing.assert_allclose(spread.affine.numpy(), image.affine.numpy(), atol=1e-5)
    # the file holds what the API computes for the same network
    network = load_model(str(tat_checkpoint), "cpu")
    api_restored, api_spread = restore_with_confidence(image, network, task="ct", device="cpu")
    np.testing.assert_allclose(spread.numpy(), api_spread.numpy(), atol=1e-3)
    np.testing.assert_allclose(restored.numpy(), restore_volume(image, network, task="ct", device="cpu").numpy(),
                               atol=1e-3)
    assert float(spread.max()) > 0.0 and bool(torch.isfinite(spread.as_tensor()).all())


def test_bad_confidence_paths_are_refused_before_work(tmp_path: Path, ct_file: Path, capsys) -> None:
    out = tmp_path / "out.nii.gz"
    cases = [
        (tmp_path / "map.png", "must end in"),
        (out, "same path"),
    ]
    for path, words in cases:
        rc = main(_restore(str(ct_file), str(out), "--model", str(tmp_path / "missing.pt"), "--confidence", str(path)))
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    existing = tmp_path / "map.nii.gz"
    existing.write_bytes(b"keep")
    rc = main(_restore(str(ct_file), str(out), "--model", str(tmp_path / "missing.pt"), "--confidence", str(existing)))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "exists" in err, err
    assert existing.read_bytes() == b"keep" and not out.exists()


def test_confidence_with_a_folder_is_refused(tmp_path: Path, ct_file: Path, capsys) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    ct_file.rename(folder / "a.nii.gz")
    rc = main(_restore(str(folder), str(tmp_path / "out"), "--confidence", str(tmp_path / "c.nii.gz")))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "one input" in err, err
