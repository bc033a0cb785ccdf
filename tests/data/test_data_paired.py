"""Paired-data builder on small synthetic volumes: files, geometry, patient splits, MONAI datalist."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, load_decathlon_datalist

from monai_tat.data import build_paired_dataset
from monai_tat.errors import UserInputError
from monai_tat.io import read_volume, write_volume
from monai_tat.transforms import KSpaceTruncation

FAST_CT = {"num_views": 48}
FAST_PET: dict = {}  # LowCountPET inserts noise in the image domain: fast at its defaults


def _affine(spacing=(2.0, 2.0, 3.0), origin=(10.0, -5.0, 7.0)):
    a = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    a[:3, 3] = torch.tensor(origin, dtype=torch.float64)
    return a


def _write(path, array, spacing=(2.0, 2.0, 3.0)):
    write_volume(MetaTensor(torch.from_numpy(array.astype(np.float32)), affine=_affine(spacing)), path)
    return path


def _ct_volume(rng, n=24, depth=3):
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    body = (yy**2 + xx**2 <= (n / 2 - 2) ** 2)[..., None]
    return np.where(body, rng.normal(40.0, 5.0, (n, n, depth)), -1000.0)


@pytest.fixture()
def ct_inputs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    return [_write(folder / f"vol{i}.nii.gz", _ct_volume(rng)) for i in range(5)]


def _all_items(datalist_path):
    keys = ("training", "validation", "testing")
    return {key: load_decathlon_datalist(datalist_path, data_list_key=key) for key in keys}


def test_ct_pairs_files_geometry_and_monai_datalist(ct_inputs, tmp_path):
    out = tmp_path / "pairs"
    ids = ["a", "b", "c", "d", "a"]  # patient a has two volumes
    path = build_paired_dataset(ct_inputs, "ct", out, patient_ids=ids, split=(0.5, 0.25, 0.25),
                                simulator_kwargs=FAST_CT)
    assert path == out / "datalist.json"
    raw = json.loads(path.read_text())
    items = _all_items(path)
    assert sum(len(v) for v in items.values()) == 5
    assert [raw["numTraining"], raw["numValidation"], raw["numTest"]] == [len(items[k]) for k in items]
    patients_per_split = {k: {i["patient"] for i in v} for k, v in items.items()}
    assert {k: len(v) for k, v in patients_per_split.items()} == {"training": 2, "validation": 1, "testing": 1}
    assert not (patients_per_split["training"] & patients_per_split["validation"])
    assert not (patients_per_split["training"] & patients_per_split["testing"])
    assert not (patients_per_split["validation"] & patients_per_split["testing"])
    assert sum(len(p) for p in patients_per_split.values()) == 4  # both volumes of "a" in one split
    for item in (i for v in items.values() for i in v):
        assert item["task"] == "ct"
        lq, hq = read_volume(item["image"]), read_volume(item["label"])
        assert lq.shape == hq.shape == (24, 24, 3)
        np.testing.assert_allclose(lq.affine.numpy(), _affine().numpy(), atol=1e-5)
        np.testing.assert_allclose(hq.affine.numpy(), lq.affine.numpy())
        assert float((lq - hq).abs().max()) > 0  # noise was added
        assert abs(float((lq - hq).mean())) < 5.0
    source = read_volume(ct_inputs[1]).numpy()
    hq_b = read_volume(out / "hq" / "b.nii.gz").numpy()
    np.testing.assert_array_equal(hq_b, source)  # CT keeps every slice, values untouched
    names = sorted(p.name for p in (out / "lq").iterdir())
    assert names == ["a_1.nii.gz", "a_2.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii.gz"]


def test_existing_outputs_are_never_replaced_silently(ct_inputs, tmp_path):
    out = tmp_path / "pairs"
    build_paired_dataset(ct_inputs[:2], "ct", out, simulator_kwargs=FAST_CT, seed=1)
    before = (out / "lq" / "vol0.nii.gz").read_bytes()
    with pytest.raises(UserInputError, match="exists"):
        build_paired_dataset(ct_inputs[:2], "ct", out, simulator_kwargs=FAST_CT, seed=2)
    assert (out / "lq" / "vol0.nii.gz").read_bytes() == before
    build_paired_dataset(ct_inputs[:2], "ct", out, simulator_kwargs=FAST_CT, seed=2, overwrite=True)
    assert (out / "lq" / "vol0.nii.gz").read_bytes() != before
    assert not list(out.rglob("*.partial*"))


def test_same_seed_gives_identical_pairs(ct_inputs, tmp_path):
    for name in ("x", "y"):
        build_paired_dataset(ct_inputs[:1], "ct", tmp_path / name, simulator_kwargs=FAST_CT, seed=4)
    a = read_volume(tmp_path / "x" / "lq" / "vol0.nii.gz")
    b = read_volume(tmp_path / "y" / "lq" / "vol0.nii.gz")
    assert torch.equal(a, b)


def test_mri_keeps_the_central_100_slices_with_their_positions(tmp_path):
    rng = np.random.default_rng(1)
    volume = rng.random((16, 16, 120)) * 1000
    src = _write(tmp_path / "t2.nii.gz", volume, spacing=(1.0, 1.0, 1.2))
    path = build_paired_dataset([src], "mri", tmp_path / "out", split=(1, 0, 0))
    item = load_decathlon_datalist(path, data_list_key="training")[0]
    hq, lq = read_volume(item["label"]), read_volume(item["image"])
    assert hq.shape == lq.shape == (16, 16, 100)
    np.testing.assert_allclose(hq.numpy(), volume[:, :, 10:110].astype(np.float32))
    # voxel (0, 0, 0) of the pair sits where voxel (0, 0, 10) of the input was
    origin_in = (_affine((1.0, 1.0, 1.2)) @ torch.tensor([0.0, 0.0, 10.0, 1.0], dtype=torch.float64))[:3]
    np.testing.assert_allclose(hq.affine[:3, 3].numpy(), origin_in.numpy(), atol=1e-4)
    expected = KSpaceTruncation(4)(volume[:, :, 10:110][None].astype(np.float32))[0]
    np.testing.assert_allclose(lq.numpy(), expected, rtol=1e-4, atol=1e-2)


def test_pet_air_only_slices_are_dropped_and_all_air_volumes_skipped(tmp_path):
    volume = np.zeros((20, 20, 8))
    volume[4:16, 4:16, 2:6] = 2.0  # activity in slices 2..5 only
    src = _write(tmp_path / "pet.nii.gz", volume)
    air = _write(tmp_path / "air.nii.gz", np.zeros((20, 20, 4)))
    path = build_paired_dataset([src, air], "pet", tmp_path / "out", split=(1, 0, 0), simulator_kwargs=FAST_PET)
    raw = json.loads(path.read_text())
    assert raw["skipped_air_only"] == ["air"] and raw["numTraining"] == 1
    item = load_decathlon_datalist(path, data_list_key="training")[0]
    hq, lq = read_volume(item["label"]), read_volume(item["image"])
    assert hq.shape == lq.shape == (20, 20, 4)
    np.testing.assert_allclose(hq.numpy(), volume[:, :, 2:6])
    assert float(lq.min()) >= 0 and float(lq.sum()) == pytest.approx(float(hq.sum()), rel=0.1)


def test_mapping_input_patient_ids_and_user_errors(ct_inputs, tmp_path):
    path = build_paired_dataset({"p1": ct_inputs[:2], "p2": ct_inputs[2]}, "ct", tmp_path / "m",
                                simulator_kwargs=FAST_CT)
    items = [i for v in _all_items(path).values() for i in v]
    assert sorted(i["patient"] for i in items) == ["p1", "p1", "p2"]
    with pytest.raises(UserInputError, match="task"):
        build_paired_dataset(ct_inputs, "xray", tmp_path / "e1")
    with pytest.raises(UserInputError, match="not found"):
        build_paired_dataset([tmp_path / "missing.nii.gz"], "ct", tmp_path / "e2")
    with pytest.raises(UserInputError, match="patient ids"):
        build_paired_dataset(ct_inputs, "ct", tmp_path / "e3", patient_ids=["a"])
    with pytest.raises(UserInputError, match="inside the input folder"):
        build_paired_dataset([ct_inputs[0].parent], "ct", ct_inputs[0].parent / "out", patient_ids=["x"])
    assert not (tmp_path / "e1").exists()


def _write_ct_dicom(folder, volume, patient_id):
    """One axial CT series (slices, rows, columns) in HU, stored with intercept -1024."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series = generate_uid()
    for k, plane in enumerate(volume):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series, generate_uid()
        ds.Modality, ds.PatientID = "CT", patient_id
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing, ds.SliceThickness = [2.0, 2.0], 3.0
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 3.0 * k]
        ds.InstanceNumber = k + 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (plane + 1024).astype(np.uint16).tobytes()
        pydicom.dcmwrite(folder / f"s{k}.dcm", ds, enforce_file_format=True)
    return folder


def test_dicom_series_are_grouped_by_patient_id(tmp_path):
    rng = np.random.default_rng(5)
    series = [
        _write_ct_dicom(tmp_path / name, np.moveaxis(_ct_volume(rng, n=16, depth=2), -1, 0), pid)
        for name, pid in (("s1", "PAT42"), ("s2", "PAT42"), ("s3", "PAT7"), ("s4", "PAT9"))
    ]
    path = build_paired_dataset(series, "ct", tmp_path / "out", split=(0.34, 0.33, 0.33), simulator_kwargs=FAST_CT)
    items = _all_items(path)
    where = {i["patient"]: k for k, v in items.items() for i in v}
    assert set(where) == {"PAT42", "PAT7", "PAT9"}
    assert sorted(i["patient"] for v in items.values() for i in v).count("PAT42") == 2
    assert len({k for k, v in items.items() for i in v if i["patient"] == "PAT42"}) == 1
    hq = read_volume(tmp_path / "out" / "hq" / "PAT42_1.nii.gz")
    assert hq.shape == (16, 16, 2) and float(hq.min()) == pytest.approx(-1000.0)
