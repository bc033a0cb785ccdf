"""The slice subset of a prepared cache: evenly spaced training slices within a byte budget, the
central validation slices, pixel-aligned pairs, nothing overwritten."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from subset_cache import central, evenly_spaced, main, subset_datalist


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), str(path))


@pytest.fixture
def pairs(tmp_path):
    rng = np.random.default_rng(0)
    lists = {"name": "test pairs", "training": [], "validation": []}
    for split, count, slices in (("training", 3, 12), ("validation", 1, 10)):
        for n in range(count):
            # slice k holds the value k in its first pixel, to check which slices were kept
            hq = rng.integers(-1000, 1000, size=(32, 32, slices)).astype(np.int16)
            hq[0, 0, :] = np.arange(slices)
            lq = (hq + rng.integers(-50, 50, size=hq.shape)).astype(np.int16)
            lq[0, 0, :] = np.arange(slices)
            item = {"task": "ct", "image": f"lq/{split}_{n}.nii.gz", "label": f"hq/{split}_{n}.nii.gz"}
            _write(tmp_path / "pairs" / item["image"], lq)
            _write(tmp_path / "pairs" / item["label"], hq)
            lists[split].append(item)
    (tmp_path / "pairs" / "datalist.json").write_text(json.dumps(lists))
    return tmp_path / "pairs" / "datalist.json"


def test_slice_choices():
    assert evenly_spaced(12, 3) == [0, 6, 11] and evenly_spaced(4, 9) == [0, 1, 2, 3]
    assert central(10, 4) == [3, 4, 5, 6] and central(3, 4) == [0, 1, 2]


def test_subset_fits_the_budget_and_keeps_pairs_aligned(pairs, tmp_path):
    total = sum(f.stat().st_size for f in pairs.parent.rglob("*.nii.gz"))
    out = tmp_path / "subset"
    result = subset_datalist(pairs, out, megabytes=total / 3 / 1e6)
    keep = result["subset"]["training_slices_per_pair"]
    assert 1 <= keep < 12
    written = sum(f.stat().st_size for f in out.rglob("*.nii.gz"))
    assert written <= total / 3 * 1.1  # compression of the subset differs a little from the per-slice estimate
    assert [i["image"] for i in result["training"]] == [f"lq/training_{n}.nii.gz" for n in range(3)]
    for item in result["training"]:
        lq, hq = (np.asarray(nib.load(str(out / item[k])).dataobj) for k in ("image", "label"))
        assert lq.shape == hq.shape == (32, 32, keep)
        assert list(lq[0, 0]) == list(hq[0, 0]) == evenly_spaced(12, keep)
        assert np.allclose(nib.load(str(out / item["image"])).affine, np.diag([0.8, 0.8, 2.0, 1.0]))
    val = np.asarray(nib.load(str(out / "hq/validation_0.nii.gz")).dataobj)
    assert list(val[0, 0]) == [3, 4, 5, 6]
    # never over an earlier subset
    with pytest.raises(SystemExit, match="exists"):
        subset_datalist(pairs, out, megabytes=1)


def test_a_budget_below_one_slice_per_pair_is_refused(pairs, tmp_path, capsys):
    with pytest.raises(SystemExit, match="raise --megabytes"):
        main([str(pairs), str(tmp_path / "tiny"), "--megabytes", "0.001"])


def test_int16_subset_keeps_values_within_half_a_step_in_fewer_bytes(tmp_path):
    rng = np.random.default_rng(1)
    lists = {"training": [], "validation": []}
    for n in range(2):
        # float32 noise, as the simulated pairs are: compresses poorly as floats
        hq = (rng.normal(0.0, 300.0, size=(48, 48, 10)) - 200.0).astype(np.float32)
        lq = (hq + rng.normal(0.0, 40.0, size=hq.shape)).astype(np.float32)
        item = {"task": "ct", "image": f"lq/p{n}.nii.gz", "label": f"hq/p{n}.nii.gz"}
        _write(tmp_path / "pairs" / item["image"], lq)
        _write(tmp_path / "pairs" / item["label"], hq)
        lists["training"].append(item)
    (tmp_path / "pairs" / "datalist.json").write_text(json.dumps(lists))
    datalist = tmp_path / "pairs" / "datalist.json"

    as_float = subset_datalist(datalist, tmp_path / "f", megabytes=100)
    as_int = subset_datalist(datalist, tmp_path / "i", megabytes=100, int16=True)

    assert as_int["subset"]["stored_as"] == "int16, scaled"
    size = {name: sum(f.stat().st_size for f in (tmp_path / name).rglob("*.nii.gz")) for name in ("f", "i")}
    assert size["i"] < 0.7 * size["f"]
    for item in as_int["training"]:
        for key in ("image", "label"):
            stored = nib.load(str(tmp_path / "i" / item[key]))
            original = nib.load(str(tmp_path / "pairs" / item[key])).get_fdata()
            assert stored.get_data_dtype() == np.int16
            step = (original.max() - original.min()) / 65535
            assert np.abs(stored.get_fdata() - original).max() <= step * 0.51
            assert np.allclose(stored.affine, np.diag([0.8, 0.8, 2.0, 1.0]))
    # the same budget holds more int16 slices than float ones
    tight = sum(f.stat().st_size for f in (tmp_path / "f").rglob("*.nii.gz")) / 2 / 1e6
    assert (subset_datalist(datalist, tmp_path / "ti", megabytes=tight, int16=True)["subset"]["training_slices_per_pair"]
            > subset_datalist(datalist, tmp_path / "tf", megabytes=tight)["subset"]["training_slices_per_pair"])
