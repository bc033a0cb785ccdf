"""Bundle inference without a ``task`` in the datalist items: from the DICOM modality, the image, or
the bundle's ``task`` setting (``--task ct``), as a MONAI Deploy or Label app calls it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import BUNDLE_NAMES, BUNDLES, REPO, bundle_run, copy_bundle
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.transforms import LoadImage, LoadImaged
from dicom_series import write_series
from units_phantoms import ct_hu, pet_suv

from monai_tat.errors import UserInputError
from monai_tat.inference import ResolveTaskd, load_model, restore_volume
from monai_tat.io import read_volume, write_volume
from monai_tat.training import load_datalist


def _soft_tissue_hu(shape=(24, 24, 3)) -> np.ndarray:
    """Integer HU between 0 and 90 without air: the intensities alone do not tell CT from PET or MRI."""
    return np.random.default_rng(1).integers(0, 90, size=shape).astype(np.float32)


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_inference_configs_take_items_without_task_and_a_bundle_task_setting(name: str) -> None:
    config = ConfigParser.load_config_file(str(BUNDLES / name / "configs" / "inference.json"))
    assert config["task"] is None
    assert "require_task=False" in config["data"]
    targets = [t["_target_"] for t in config["preprocessing"]["transforms"]]
    assert targets[-1] == "monai_tat.inference.task_detection.ResolveTaskd"
    # physical units in and out: the engine maps once each way, nothing maps or inverts around it
    assert not any("TaskIntensityd" in t for t in targets)
    post = [t["_target_"] for t in config["postprocessing"]["transforms"]]
    assert post[0] == "SaveImaged" and not any("Invertd" in t or "TaskIntensityd" in t for t in post)
    resolve = next(t for t in config["preprocessing"]["transforms"] if t["_target_"].endswith("ResolveTaskd"))
    assert resolve["task"] == "@task" and resolve["task_key"] == "task"


def test_resolve_taskd_order_item_then_bundle_setting_then_image(tmp_path: Path) -> None:
    hu = MetaTensor(torch.from_numpy(ct_hu()))
    assert ResolveTaskd("image")({"image": hu})["task"] == "ct"  # air at -1000 HU
    assert ResolveTaskd("image", task="pet")({"image": hu})["task"] == "pet"  # the bundle's setting
    assert ResolveTaskd("image", task="auto")({"image": hu, "task": "CT"})["task"] == "ct"
    with pytest.raises(UserInputError, match="bundle's task setting is pet"):
        ResolveTaskd("image", task="pet")({"image": hu, "task": "ct"})
    # DICOM Modality as MONAI's readers record it wins over the intensities.
    tagged = MetaTensor(torch.from_numpy(ct_hu()), meta={"00080060": {"vr": "CS", "Value": ["MR"]}})
    assert ResolveTaskd("image")({"image": tagged})["task"] == "mri"
    with pytest.raises(UserInputError, match="modality US"):
        ResolveTaskd("image")({"image": MetaTensor(torch.from_numpy(ct_hu()), meta={"0008|0060": "US"})})
    # Intensities that fit no rule: the message asks for the task.
    with pytest.raises(UserInputError, match="choose the task"):
        ResolveTaskd("image")({"image": MetaTensor(torch.from_numpy(_soft_tissue_hu()))})
    # ... unless the image was read from DICOM: its header names the modality.
    write_series(tmp_path / "ct", _soft_tissue_hu().transpose(2, 0, 1), pixel_spacing=(0.8, 0.8), slice_spacing=2.0)
    loaded = LoadImaged("image", image_only=True)({"image": str(tmp_path / "ct")})
    assert ResolveTaskd("image")(loaded)["task"] == "ct"


def test_datalist_items_may_leave_the_task_out_for_inference(tmp_path: Path) -> None:
    datalist = tmp_path / "datalist.json"
    for name in ("a.nii.gz", "b.nii.gz"):  # the datalist reader checks that listed files exist
        write_volume(np.ones((4, 4, 2), dtype=np.float32), tmp_path / name)
    datalist.write_text(json.dumps({"testing": [{"image": "a.nii.gz"}, {"image": "b.nii.gz", "task": "PET"}]}))
    items = load_datalist(datalist, "testing", require_label=False, require_task=False)
    assert "task" not in items[0] and items[1]["task"] == "pet"
    with pytest.raises(UserInputError, match="'image' and 'task'"):
        load_datalist(datalist, "testing", require_label=False)


def _run(root: Path, overrides: dict) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json"]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_bundle_inference_of_image_only_items_and_with_the_task_setting(tmp_path: Path) -> None:
    root = copy_bundle("tat_allinone", tmp_path, weights=True)
    data = tmp_path / "data"
    write_series(data / "ct_series", ct_hu((24, 24, 3)).transpose(2, 0, 1), pixel_spacing=(0.8, 0.8), slice_spacing=2.0)
    write_volume(pet_suv((24, 24, 3)), data / "pet.nii.gz")
    write_volume(np.random.default_rng(0).integers(0, 1200, (24, 24, 3)).astype(np.float32), data / "mri.nii.gz")
    write_volume(_soft_tissue_hu(), data / "soft.nii.gz")
    items = [{"image": "ct_series"}, {"image": "pet.nii.gz"}, {"image": "mri.nii.gz"}]
    (data / "datalist.json").write_text(json.dumps({"testing": items}))
    bundle_run("inference.json", root, {"dataset_dir": data})

    net = load_model(root)
    out = root / "eval" / "restored"
    for stem, task in (("pet", "pet"), ("mri", "mri")):
        restored = read_volume(out / f"{stem}_restored.nii.gz")
        expected = restore_volume(read_volume(data / f"{stem}.nii.gz"), net, task, device="cpu")
        torch.testing.assert_close(restored.as_tensor(), expected.as_tensor(), rtol=1e-4, atol=1e-3)
    ct_out = LoadImage(image_only=True)(str(out / "ct_series_restored.nii.gz"))
    ct_expected = restore_volume(LoadImage(image_only=True)(str(data / "ct_series")), net, "ct", device="cpu")
    np.testing.assert_allclose(np.sort(ct_out.numpy().ravel()), np.sort(ct_expected.numpy().ravel()), atol=1e-2)

    # An image whose task nothing tells: refused without the bundle's task setting, restored with --task ct.
    (data / "datalist.json").write_text(json.dumps({"testing": [{"image": "soft.nii.gz"}]}))
    refused = _run(root, {"dataset_dir": data, "output_dir": tmp_path / "refused"})
    assert refused.returncode != 0 and "choose the task" in refused.stdout + refused.stderr
    bundle_run("inference.json", root, {"dataset_dir": data, "task": "ct", "output_dir": tmp_path / "as_ct"})
    restored = read_volume(tmp_path / "as_ct" / "soft_restored.nii.gz")
    expected = restore_volume(read_volume(data / "soft.nii.gz"), net, "ct", device="cpu")
    torch.testing.assert_close(restored.as_tensor(), expected.as_tensor(), rtol=1e-4, atol=1e-3)
