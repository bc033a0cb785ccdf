"""Reading and writing volumes: geometry round trips, DICOM series, and refused inputs."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.io import axial_axis, read_volume, write_volume


def _oblique_affine() -> np.ndarray:
    """A RAS affine with rotation, anisotropic spacing and an offset origin."""
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [12.0, -30.0, 45.0]
    return affine


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_round_trip_keeps_values_and_geometry(tmp_path, suffix):
    data = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    image = MetaTensor(torch.from_numpy(data), affine=torch.as_tensor(_oblique_affine()))
    path = write_volume(image, tmp_path / f"vol{suffix}")
    back = read_volume(path)
    assert back.shape == (6, 5, 4) and back.dtype == torch.float32
    np.testing.assert_allclose(back.numpy(), data, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back.affine.numpy(), _oblique_affine(), atol=1e-5)
    np.testing.assert_allclose(back.meta["spacing"], [0.7, 0.9, 2.5], atol=1e-6)
    assert back.meta["modality"] is None and back.meta["filename_or_obj"] == str(path)
    assert [p.name for p in tmp_path.iterdir()] == [f"vol{suffix}"]  # no temporary file left


def test_reading_matches_nibabel_ras_affine(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    nib.save(nib.Nifti1Image(data, _oblique_affine()), tmp_path / "x.nii.gz")
    image = read_volume(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(image.numpy(), data)
    np.testing.assert_allclose(image.affine.numpy(), _oblique_affine(), atol=1e-5)


def test_2d_image_round_trip(tmp_path):
    data = np.random.default_rng(1).uniform(0, 10, (7, 9)).astype(np.float32)
    affine = np.diag([0.5, 0.25, 1.0, 1.0])
    affine[:2, 3] = [3.0, 4.0]
    write_volume(MetaTensor(torch.from_numpy(data), affine=torch.as_tensor(affine)), tmp_path / "slice.mha")
    back = read_volume(tmp_path / "slice.mha")
    assert back.shape == (7, 9)
    np.testing.assert_allclose(back.numpy(), data)
    np.testing.assert_allclose(back.affine.numpy()[:2], affine[:2], atol=1e-6)


def test_axial_axis_follows_the_affine():
    assert axial_axis(np.eye(4)) == 2
    permuted = np.zeros((4, 4))
    permuted[0, 1], permuted[1, 2], permuted[2, 0], permuted[3, 3] = 1.0, 1.0, 3.0, 1.0
    assert axial_axis(permuted) == 0
    assert axial_axis(None) == 2


def test_dicom_ct_series_in_hu_with_geometry(tmp_path, dicom_writer):
    rng = np.random.default_rng(2)
    hu = rng.integers(-1000, 1500, (3, 6, 5)).astype(np.float64)
    folder = dicom_writer(tmp_path / "ct", hu, intercept=-1024.0)
    for path in (folder, folder / "slice001.dcm"):  # a folder, or one file of the series
        image = read_volume(path)
        assert image.meta["modality"] == "CT" and image.meta["units"] == "HU"
        assert image.shape == (5, 6, 3)  # (columns, rows, slices): x, y, z
        np.testing.assert_allclose(image.numpy(), hu.transpose(2, 1, 0), atol=1e-3)
        np.testing.assert_allclose(image.meta["spacing"], [0.8, 0.7, 2.5], atol=1e-6)
        # LPS origin (-10, -20, 5) is RAS (10, 20, 5).
        np.testing.assert_allclose(image.affine.numpy()[:3, 3], [10.0, 20.0, 5.0], atol=1e-6)
        assert axial_axis(image.affine.numpy()) == 2


def test_dicom_per_slice_slopes_are_not_truncated(tmp_path, dicom_writer):
    values = np.full((3, 4, 4), 100.0)
    values[1] = 37.25
    folder = dicom_writer(tmp_path / "mr", values, modality="MR", slopes=[1.0, 0.25, 2.0])
    image = read_volume(folder)
    assert image.meta["modality"] == "MR"
    np.testing.assert_allclose(image.numpy()[..., 1], 37.25, atol=1e-6)
    np.testing.assert_allclose(image.numpy()[..., 2], 100.0, atol=1e-6)


def test_folder_with_two_series_needs_a_file(tmp_path, dicom_writer):
    dicom_writer(tmp_path / "both", np.zeros((2, 4, 4)), extra={"SeriesNumber": 1})
    second = dicom_writer(tmp_path / "other", np.full((2, 4, 4), 5.0), extra={"SeriesNumber": 2})
    for f in second.iterdir():
        os.replace(f, tmp_path / "both" / f"b_{f.name}")
    with pytest.raises(UserInputError, match="2 DICOM series"):
        read_volume(tmp_path / "both")
    image = read_volume(tmp_path / "both" / "b_slice000.dcm")
    assert image.shape == (4, 4, 2) and float(image.mean()) == pytest.approx(5.0)


def test_refused_inputs(tmp_path):
    with pytest.raises(UserInputError, match="not found"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(UserInputError, match="empty"):
        read_volume(tmp_path / "empty.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"this is not an image" * 10)
    with pytest.raises(UserInputError, match="cannot read"):
        read_volume(tmp_path / "junk.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3, 2), np.float32), np.eye(4)), tmp_path / "series.nii.gz")
    with pytest.raises(UserInputError, match="4D"):
        read_volume(tmp_path / "series.nii.gz")
    rgb = sitk.Image([4, 4], sitk.sitkVectorUInt8, 3)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(UserInputError, match="values per voxel"):
        read_volume(tmp_path / "rgb.mha")


def test_time_axis_of_one_is_a_3d_volume(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((4, 3, 2, 1), np.float32), np.eye(4)), tmp_path / "t1.nii.gz")
    assert read_volume(tmp_path / "t1.nii.gz").shape == (4, 3, 2)


def test_write_refusals_leave_nothing(tmp_path):
    image = MetaTensor(torch.zeros(3, 3, 3))
    with pytest.raises(UserInputError, match="suffix"):
        write_volume(image, tmp_path / "out.png")
    (tmp_path / "exists.nii.gz").write_bytes(b"keep")
    with pytest.raises(UserInputError, match="exists"):
        write_volume(image, tmp_path / "exists.nii.gz")
    assert (tmp_path / "exists.nii.gz").read_bytes() == b"keep"
    write_volume(image, tmp_path / "exists.nii.gz", overwrite=True)
    assert read_volume(tmp_path / "exists.nii.gz").shape == (3, 3, 3)
    with pytest.raises(UserInputError, match="does not exist"):
        write_volume(image, tmp_path / "no_dir" / "out.nii.gz")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="not a folder"):
        write_volume(image, tmp_path / "file" / "out.nii.gz")
    with pytest.raises(UserInputError, match="2D or 3D"):
        write_volume(MetaTensor(torch.zeros(2, 2, 2, 2, 2)), tmp_path / "five.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.nii.gz", "file"]


def test_failed_write_removes_the_temporary_file(tmp_path, monkeypatch):
    def failing_write(image, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    with pytest.raises(UserInputError, match="disk full"):
        write_volume(MetaTensor(torch.zeros(2, 2, 2)), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_refused(tmp_path, monkeypatch):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(UserInputError, match="not writable"):
        write_volume(MetaTensor(torch.zeros(2, 2, 2)), tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_nan_voxels_are_read_as_nan(tmp_path, suffix):
    # ITK's NIfTI reader would turn NaN into 0 and hide it from the NaN check of the engine.
    data = np.ones((4, 4, 2), np.float32)
    data[1, 2, 1] = np.nan
    if suffix == ".nii.gz":
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / f"nan{suffix}")
    else:
        write_volume(MetaTensor(torch.from_numpy(data)), tmp_path / f"nan{suffix}")
    image = read_volume(tmp_path / f"nan{suffix}")
    assert int(torch.isnan(image).sum()) == 1 and bool(torch.isnan(image[1, 2, 1]))


def _pet_tags(weight_kg: float | None = 70.0) -> dict:
    from pydicom.dataset import Dataset

    radio = Dataset()
    radio.RadionuclideTotalDose = 3.7e8  # Bq
    radio.RadionuclideHalfLife = 6586.2  # s, F-18
    radio.RadiopharmaceuticalStartTime = "080000"
    tags = {
        "Units": "BQML", "DecayCorrection": "START", "CorrectedImage": ["ATTN", "DECY"],
        "SeriesDate": "20240102", "SeriesTime": "090000", "AcquisitionDate": "20240102", "AcquisitionTime": "090000",
        "RadiopharmaceuticalInformationSequence": [radio],
    }
    if weight_kg is not None:
        tags["PatientWeight"] = weight_kg
    return tags


def test_pet_dicom_series_arrives_in_suv(tmp_path, dicom_writer):
    bqml = np.stack([np.full((4, 5), 5000.0), np.full((4, 5), 1234.5)])
    folder = dicom_writer(tmp_path / "pet", bqml, modality="PT", slopes=[1.0, 0.5], extra=_pet_tags())
    image = read_volume(folder)
    # SUVbw = Bq/mL * weight_g / (dose * 2^(-elapsed / half-life)), one hour after injection.
    factor = 70_000.0 / (3.7e8 * 2.0 ** (-3600.0 / 6586.2))
    assert image.meta["modality"] == "PT" and image.meta["units"] == "SUV"
    np.testing.assert_allclose(image.numpy()[..., 0], 5000.0 * factor, rtol=1e-5)
    np.testing.assert_allclose(image.numpy()[..., 1], 1234.5 * factor, rtol=1e-5)


def test_pet_dicom_without_weight_needs_an_override(tmp_path, dicom_writer):
    folder = dicom_writer(tmp_path / "pet", np.full((2, 4, 4), 100.0), modality="PT", extra=_pet_tags(None))
    with pytest.raises(UserInputError, match="PatientWeight"):
        read_volume(folder)
    image = read_volume(folder, suv_overrides={"weight_kg": 35.0})
    np.testing.assert_allclose(image.numpy(), 100.0 * 35_000.0 / (3.7e8 * 2.0 ** (-3600.0 / 6586.2)), rtol=1e-5)
