"""Datalist loading, paired normalisation and the paired slice dataset with a shared random crop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from monai_tat.errors import UserInputError
from monai_tat.io import read_volume
from monai_tat.training import PairedSliceDataset, load_datalist, normalize_pair


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


def test_several_datalists_resolve_paths_against_their_own_folder(tmp_path: Path) -> None:
    from paired_volumes import write_pairs

    ct = write_pairs(tmp_path / "ct_pairs", tasks=("ct",))
    mri = write_pairs(tmp_path / "mri_pairs", tasks=("mri",))
    items = load_datalist([ct, mri], "training")
    assert [d["task"] for d in items] == ["ct", "mri"]
    assert Path(items[1]["label"]) == (tmp_path / "mri_pairs" / "mri" / "case0_hq.nii.gz").resolve()


def test_normalize_pair_uses_the_lq_mapping_for_both() -> None:
    lq = torch.linspace(0, 1000, 200).reshape(10, 20)
    hq = lq * 1.5
    lq_n, hq_n = normalize_pair(lq, hq, "mri")
    info = lq_n.applied_operations[-1]["extra_info"]
    lower, upper = info["lower"], info["upper"]
    torch.testing.assert_close(hq_n * (upper - lower) + lower, hq, rtol=1e-5, atol=1e-3)
    assert hq_n.max() > 1.4  # not clipped by default; LQ statistics, not HQ ones
    _, hq_clipped = normalize_pair(lq, hq, "mri", clip=True)
    assert hq_clipped.max() <= 1.0
    # CT / PET: clipped to the fixed model range by default, as the engine feeds the network.
    ct_lq, ct_hq = normalize_pair(torch.full((4, 4), -3024.0), torch.full((4, 4), 5000.0), "ct")
    assert float(ct_lq.min()) == 0.0 and float(ct_hq.max()) == 1.0
    _, pet_hq = normalize_pair(torch.zeros(4, 4), torch.full((4, 4), 30.0), "pet", clip=False)
    assert float(pet_hq.max()) == 1.5
    with pytest.raises(UserInputError, match="shape"):
        normalize_pair(torch.zeros(4, 4), torch.zeros(4, 5), "ct")


def test_slices_and_same_crop_for_lq_and_hq(paired_dir: Path) -> None:
    items = load_datalist(paired_dir / "datalist.json")
    dataset = PairedSliceDataset(items, patch_size=(16, 16))
    assert len(dataset) == 9 and dataset.tasks == ["ct"] * 3 + ["pet"] * 3 + ["mri"] * 3
    whole = PairedSliceDataset(items, patch_size=None)
    # Slices as the restoration engine cuts them: axial axis, rows along j, columns along i.
    assert tuple(whole[0]["image"].shape) == (1, 20, 24)
    lq_volume, hq_volume = read_volume(items[2]["image"]), read_volume(items[2]["label"])
    lq_n, hq_n = normalize_pair(lq_volume, hq_volume, "mri")
    torch.testing.assert_close(whole[8]["image"][0], lq_n.as_tensor()[:, :, 2].T)
    torch.testing.assert_close(whole[8]["label"][0], hq_n[:, :, 2].T)
    for index in (0, 4, 8):
        crop = dataset[index]
        assert crop["task"] == dataset.tasks[index]
        assert tuple(crop["image"].shape) == tuple(crop["label"].shape) == (1, 16, 16)
        # The crop of LQ - HQ must be the same window of the whole-slice difference.
        diff = (whole[index]["image"] - whole[index]["label"])[0]
        crop_diff = (crop["image"] - crop["label"])[0]
        matches = [
            (i, j) for i in range(20 - 16 + 1) for j in range(24 - 16 + 1)
            if torch.allclose(diff[i : i + 16, j : j + 16], crop_diff, atol=1e-6)
        ]
        assert matches, "LQ and HQ crops are not the same window"
    padded = PairedSliceDataset(items[:1], patch_size=(32, 32))[0]
    assert tuple(padded["image"].shape) == (1, 32, 32)


def test_mismatched_pair_is_reported(paired_dir: Path) -> None:
    items = load_datalist(paired_dir / "datalist.json")
    items[0]["label"] = items[1]["label"]  # same shape, fine
    PairedSliceDataset(items[:1], patch_size=None)
    import nibabel as nib
    import numpy as np

    odd = paired_dir / "odd.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 3), np.float32), np.eye(4)), odd)
    items[0]["label"] = str(odd)
    with pytest.raises(UserInputError, match="differ in shape"):
        PairedSliceDataset(items[:1])
