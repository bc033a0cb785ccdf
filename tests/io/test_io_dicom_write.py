"""DICOM out: a restored series a validator accepts, derived from its source, values kept through re-encoding."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from dicom_series import write_series

from monai_tat.cli import main
from monai_tat.errors import UserInputError
from monai_tat.io import atomic_write_folder, read_volume, write_dicom_series, write_volume

SHAPE = (4, 24, 20)  # slices, rows, columns: rows != columns catches a transposed plane


@pytest.fixture
def tiny_tat(tmp_path: Path) -> Path:
    from monai_tat.networks import TAT

    path = tmp_path / "tiny_tat.pt"
    torch.save(TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).state_dict(), path)
    return path


def _ct_volume(rng: np.random.Generator) -> np.ndarray:
    volume = rng.normal(40.0, 30.0, SHAPE)
    volume[:, :5] = -1000.0  # air rows
    return volume


def _pet_volume(rng: np.random.Generator) -> np.ndarray:
    return np.abs(rng.normal(6000.0, 2500.0, SHAPE))  # Bq/mL, SUV ~ 1-3 with the test's dose and weight


def _dciodvfy_errors(path: Path) -> list[str]:
    tool = shutil.which("dciodvfy")
    assert tool is not None, "dciodvfy is missing: apt-get install -y dicom3tools"
    run = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


def _files(folder: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())]


@pytest.mark.parametrize("modality", ["CT", "PT"])
def test_dicom_round_trip(tmp_path, tiny_tat, modality, capsys):
    rng = np.random.default_rng(3)
    volume = _ct_volume(rng) if modality == "CT" else _pet_volume(rng)
    source = write_series(tmp_path / "source", volume, modality=modality, complete=True, prefix="src")
    common = ["--model", str(tiny_tat), "--device", "cpu", "--quiet"]
    assert main(["restore", str(source), str(tmp_path / "restored"), "--format", "dicom", *common]) == 0
    assert main(["restore", str(source), str(tmp_path / "restored.nii.gz"), *common]) == 0
    out = tmp_path / "restored"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial folder left

    # A validator accepts every file.
    for path in sorted(out.iterdir()):
        assert _dciodvfy_errors(path) == [], path

    sources, derived = _files(source), _files(out)
    assert len(derived) == len(sources) == SHAPE[0]
    series = {str(d.SeriesInstanceUID) for d in derived}
    assert len(series) == 1 and series.isdisjoint({str(s.SeriesInstanceUID) for s in sources})
    sops = [str(d.SOPInstanceUID) for d in derived]
    assert len(set(sops)) == len(sops) and set(sops).isdisjoint({str(s.SOPInstanceUID) for s in sources})
    by_position = {tuple(float(v) for v in s.ImagePositionPatient): s for s in sources}
    for d in derived:
        src = by_position[tuple(float(v) for v in d.ImagePositionPatient)]
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientName", "PatientID", "PatientBirthDate",
                        "AccessionNumber", "StudyDate", "ImageOrientationPatient", "PixelSpacing", "SOPClassUID"):
            assert d.get(keyword) == src.get(keyword), keyword
        assert list(d.ImageType[:2]) == ["DERIVED", "PRIMARY" if modality == "PT" else "SECONDARY"]
        assert "TAT" in d.SeriesDescription and "sha256" in d.DerivationDescription
        (reference,) = d.SourceImageSequence
        assert reference.ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert int(d.PixelRepresentation) == 1 and d.pixel_array.dtype == np.int16

    # Values: the series read back equals the NIfTI output within half a re-encoding step.
    nifti = read_volume(tmp_path / "restored.nii.gz").numpy()
    back = read_volume(out)  # SimpleITK reads it; PET comes back in SUV from the copied headers
    assert back.shape == nifti.shape
    np.testing.assert_allclose(back.affine.numpy(), read_volume(source).affine.numpy(), atol=1e-6)
    ordered = sorted(derived, key=lambda d: float(d.ImagePositionPatient[2]))
    factor = back.meta["suv_factor"]
    steps = np.array([float(d.RescaleSlope) for d in ordered]) * factor  # one stored unit, in the NIfTI's units
    error = np.abs(back.numpy() - nifti).max(axis=(0, 1))
    assert np.all(error <= steps / 2 + 1e-6 * np.abs(nifti).max()), (error, steps)
    assert np.abs(nifti - read_volume(source).numpy()).max() > 10 * steps.max()  # it was restored, not copied
    plain = sitk.ReadImage([str(p) for p in sorted(out.iterdir())], sitk.sitkFloat32)  # plain SimpleITK too
    assert plain.GetSize() == (SHAPE[2], SHAPE[1], SHAPE[0])
    if modality == "PT":  # stored in the source's units (Bq/mL), not SUV
        assert all(d.Units == "BQML" and float(d.RescaleIntercept) == 0 for d in derived)
        bqml = ordered[1].pixel_array * float(ordered[1].RescaleSlope)
        np.testing.assert_allclose(bqml, nifti[:, :, 1].T / factor, atol=float(ordered[1].RescaleSlope))
    else:
        assert all(float(d.RescaleSlope) == 1.0 and float(d.RescaleIntercept) == -1024 for d in derived)


def test_non_dicom_input_is_refused(tmp_path, tiny_tat, capsys):
    image = write_volume(np.full((8, 8, 2), -1000.0, dtype=np.float32), tmp_path / "ct.nii.gz")
    rc = main(["restore", str(image), str(tmp_path / "series"), "--format", "dicom", "--model", str(tiny_tat)])
    err = capsys.readouterr().err
    assert rc == 2 and "is not DICOM" in err and "none is invented" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "series").exists()
    with pytest.raises(UserInputError, match="read from DICOM"):
        write_dicom_series(read_volume(image), tmp_path / "series", weights_sha256="0" * 64, network="TAT", task="ct")


def test_existing_series_folder_needs_overwrite(tmp_path, tiny_tat, capsys):
    source = write_series(tmp_path / "source", _ct_volume(np.random.default_rng(0))[:2], modality="CT", complete=True, prefix="src")
    out = tmp_path / "restored"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    args = ["restore", str(source), str(out), "--format", "dicom", "--model", str(tiny_tat), "--quiet"]
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert (out / "keep.txt").exists()
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["IM00001.dcm", "IM00002.dcm"]


def test_series_that_fails_verification_is_never_published(tmp_path, monkeypatch):
    source = write_series(tmp_path / "source", _ct_volume(np.random.default_rng(0))[:2], modality="CT", complete=True, prefix="src")
    image = read_volume(source)
    import monai_tat.io.dicom_write as dicom_write

    real_save = pydicom.Dataset.save_as

    def corrupting_save(ds, filename, **kwargs):  # the bytes on disk differ from the dataset in memory
        ds = ds.copy()
        ds.PixelData = (np.frombuffer(ds.PixelData, np.int16) + 1).astype("<i2").tobytes()
        real_save(ds, filename, **kwargs)

    monkeypatch.setattr(pydicom.Dataset, "save_as", corrupting_save)
    with pytest.raises(UserInputError, match="pixel values differ"):
        dicom_write.write_dicom_series(image, tmp_path / "out", weights_sha256="0" * 64, network="TAT", task="ct")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_atomic_folder_keeps_the_previous_folder_on_failure(tmp_path):
    out = tmp_path / "series"
    atomic_write_folder(out, lambda tmp: (tmp / "a.txt").write_text("first"))

    def failing(tmp: Path) -> None:
        (tmp / "b.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_folder(out, failing, overwrite=True)
    with pytest.raises(UserInputError, match="bad"):
        atomic_write_folder(out, lambda tmp: (tmp / "c.txt").write_text("x"), overwrite=True,
                            verify=lambda tmp: (_ for _ in ()).throw(UserInputError("bad")))
    assert [p.name for p in tmp_path.iterdir()] == ["series"]
    assert (out / "a.txt").read_text() == "first" and sorted(p.name for p in out.iterdir()) == ["a.txt"]
    atomic_write_folder(out, lambda tmp: (tmp / "d.txt").write_text("second"), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"] and (out / "d.txt").exists()


def test_bundle_postprocessing_writes_the_series(tmp_path):
    """SaveDicomSeriesd, as a bundle's postprocessing after LoadImaged / Invertd, writes a valid derived series."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from monai_tat.networks import TAT
    from monai_tat.transforms.save_dicom import SaveDicomSeriesd

    source = write_series(tmp_path / "series_ct", _ct_volume(np.random.default_rng(2)), modality="CT", complete=True, prefix="src")
    item = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image")])({"image": str(source),
                                                                                          "task": "ct"})
    item["pred"] = item["image"] + 25.0  # stands in for the restored, inverted prediction
    save = SaveDicomSeriesd("pred", tmp_path / "out", TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1))
    save(item)
    out = tmp_path / "out" / "series_ct_restored"
    assert _dciodvfy_errors(next(out.iterdir())) == []
    back = read_volume(out)
    np.testing.assert_allclose(back.numpy(), read_volume(source).numpy() + 25.0, atol=0.5)
    assert "task ct" in _files(out)[0].DerivationDescription

    item["pred"] = item["image"][:, :-2]  # cropped: no longer on the source grid
    with pytest.raises(UserInputError, match="not on the grid"):
        SaveDicomSeriesd("pred", tmp_path / "other", save.network)(item)
    nifti = write_volume(np.zeros((4, 4, 2), np.float32), tmp_path / "x.nii.gz")
    with pytest.raises(UserInputError, match="not loaded from DICOM"):
        SaveDicomSeriesd("image", tmp_path / "other", save.network)(LoadImaged("image", image_only=True)(
            {"image": str(nifti), "task": "ct"}))
    assert not (tmp_path / "other").exists()


def test_folder_of_series_back_as_series(tmp_path, tiny_tat, capsys):
    """A folder of DICOM series with --format dicom: one derived series each; a NIfTI in it fails alone."""
    rng = np.random.default_rng(5)
    studies = tmp_path / "studies"
    write_series(studies / "ct_series", _ct_volume(rng)[:2], modality="CT", complete=True, prefix="src")
    write_series(studies / "pet_series", _pet_volume(rng)[:2], modality="PT", complete=True, prefix="src")
    write_volume(np.full((8, 8, 2), -1000.0, dtype=np.float32), studies / "export.nii.gz")
    out = tmp_path / "restored"
    rc = main(["restore", str(studies), str(out), "--format", "dicom", "--model", str(tiny_tat), "--quiet"])
    captured = capsys.readouterr()
    assert rc == 1 and "export.nii.gz" in captured.err and "is not DICOM" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["ct_series", "manifest.jsonl", "pet_series"]
    for name, modality in (("ct_series", "CT"), ("pet_series", "PT")):
        derived = _files(out / name)
        assert len(derived) == 2 and {d.Modality for d in derived} == {modality}
        assert _dciodvfy_errors(out / name / "IM00001.dcm") == []
