"""Bundle runs with bad data end with one line naming the cause; one-slice volumes keep their 3D shape."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from bundle_helpers import REPO, TINY, cli_args, copy_bundle

from monai_tat.errors import UserInputError
from monai_tat.training import load_datalist


def _volume(path: Path, shape=(24, 20, 3), spacing=(0.8, 0.8, 5.0)) -> Path:
    data = np.linspace(-1000, 400, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


def _datalist(folder: Path, items: list, key: str = "testing") -> Path:
    (folder / "datalist.json").write_text(json.dumps({key: items}))
    return folder / "datalist.json"


def _truncated(folder: Path) -> Path:
    path = _volume(folder / "cut.nii.gz")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return path


@pytest.mark.parametrize(
    ("items", "words"),
    [
        ([{"image": "missing.nii.gz", "task": "ct"}], ("item 0", "image file not found", "missing.nii.gz")),
        ([{"image": "ok.nii.gz"}], ("item 0", "'task'")),
        ([{"image": "ok.nii.gz", "task": "xray"}], ("xray",)),
        ([], ("no 'testing' items",)),
        ([{"image": "cut.nii.gz", "task": "ct"}], ("cut.nii.gz", "cannot be read")),
    ],
    ids=["missing-file", "no-task", "unknown-task", "empty-list", "truncated-volume"],
)
def test_datalist_problems_name_their_cause(tmp_path, items, words):
    _volume(tmp_path / "ok.nii.gz")
    _truncated(tmp_path)
    with pytest.raises(UserInputError) as info:
        load_datalist(_datalist(tmp_path, items), "testing", require_label=False)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word.lower() in message.lower(), message


def test_one_slice_volume_keeps_its_shape_and_spacing_through_save_image(tmp_path):
    from monai.transforms import EnsureChannelFirst, LoadImage, SaveImage

    source = _volume(tmp_path / "one.nii.gz", shape=(32, 28, 1), spacing=(0.7, 0.7, 5.0))
    image = EnsureChannelFirst()(LoadImage(image_only=True)(source))
    saver = SaveImage(output_dir=tmp_path / "out", output_postfix="restored", separate_folder=False,
                      resample=False, output_dtype=torch.float32, print_log=False,
                      writer="monai_tat.io.bundle_writer.VolumeWriter")
    saver(image)
    written = nib.load(str(tmp_path / "out" / "one_restored.nii.gz"))
    assert written.shape == (32, 28, 1)
    np.testing.assert_allclose(written.header.get_zooms(), (0.7, 0.7, 5.0), rtol=1e-6)
    np.testing.assert_array_equal(written.get_fdata()[..., 0], nib.load(str(source)).get_fdata()[..., 0])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one_restored.nii.gz"]


def test_user_error_inside_library_exceptions_is_one_line(tmp_path):
    code = (
        "import monai_tat.bundle_errors\n"
        "from monai_tat.errors import UserInputError\n"
        "def load():\n"
        "    raise UserInputError('datalist d.json testing item 2: image file not found: x.nii.gz')\n"
        "try:\n"
        "    load()\n"
        "except Exception as err:\n"
        "    raise RuntimeError('applying transform <monai.transforms.Compose>') from err\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("MONAI_TAT_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "monai-tat bundle: error: datalist d.json testing item 2: image file not found: x.nii.gz"]
    env["MONAI_TAT_TRACEBACK"] = "1"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" in proc.stderr and lines[-1].startswith("monai-tat bundle: error: datalist d.json")


def _bundle_run(bundle: Path, overrides: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("MONAI_TAT_TRACEBACK", None)
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
            *cli_args(overrides)]
    return subprocess.run(args, cwd=bundle, env=env, capture_output=True, text=True, timeout=300)


def test_inference_bundle_run_with_a_missing_file_ends_with_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _datalist(data, [{"image": "gone.nii.gz", "task": "ct"}])
    bundle = copy_bundle("tat_allinone", tmp_path)
    proc = _bundle_run(bundle, {"dataset_dir": data, **TINY["tat_allinone"]})
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("monai-tat bundle: error: datalist") and "gone.nii.gz" in last, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "nvimagecodec" not in proc.stderr.lower()


def test_inference_bundle_keeps_a_one_slice_volume_3d(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _volume(data / "one.nii.gz", shape=(40, 36, 1), spacing=(0.7, 0.7, 5.0))
    _datalist(data, [{"image": "one.nii.gz", "task": "ct"}])
    bundle = copy_bundle("tat_allinone", tmp_path)
    (bundle / "models").mkdir(exist_ok=True)
    from monai_tat.networks import TAT

    torch.save(TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).state_dict(), bundle / "models" / "model.pt")
    proc = _bundle_run(bundle, {"dataset_dir": data, **TINY["tat_allinone"]})
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = nib.load(str(bundle / "eval" / "restored" / "one_restored.nii.gz"))
    assert written.shape == (40, 36, 1)
    np.testing.assert_allclose(written.header.get_zooms(), (0.7, 0.7, 5.0), rtol=1e-6)
