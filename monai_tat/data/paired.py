"""Paired low/high-quality training data from high-quality volumes (``monai-tat simulate``).

Output layout under ``out_dir``::

    hq/<case>.nii.gz     high-quality volume after the papers' slice selection (the label)
    lq/<case>.nii.gz     simulated low-quality volume on the same grid (the network input)
    datalist.json        MONAI decathlon datalist: training / validation / testing lists of
                         {"image": "lq/<case>.nii.gz", "label": "hq/<case>.nii.gz",
                          "task": "ct" | "pet" | "mri", "patient": "<patient id>"}

Splits are drawn per patient, so no patient's slices appear in two splits. Inputs are never
modified; nothing existing is replaced unless ``overwrite=True``. The whole dataset is built in a
hidden temporary folder and moved into place only when every pair and the datalist are written
and verified: a bad input, a full disk or an interruption leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from monai.data import MetaTensor

from monai_tat.data.datalist import write_datalist
from monai_tat.data.prepare import crop_slices, select_slices
from monai_tat.data.split import SPLITS, split_patients
from monai_tat.errors import UserInputError
from monai_tat.io.volume import OUTPUT_SUFFIXES
from monai_tat.io import axial_axis, check_output_path, image_suffix, read_volume, write_volume
from monai_tat.io.atomic import atomic_publish_dir
from monai_tat.io.dicom import dicom_series_files, is_dicom_file, read_dicom_header
from monai_tat.tasks import check_task
from monai_tat.transforms import simulator_for_task
from monai_tat.transforms.simulators import geometry_arguments

__all__ = ["build_paired_dataset", "PairedCase"]

PathLike = Union[str, Path]


@dataclass(frozen=True)
class PairedCase:
    """One input volume: where it comes from, whose it is, and the file stem of its pair."""

    source: Path
    patient: str
    case: str


def build_paired_dataset(
    inputs: Sequence[PathLike] | Mapping[str, PathLike | Sequence[PathLike]],
    task: str,
    out_dir: PathLike,
    *,
    patient_ids: Sequence[str] | None = None,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    simulator_kwargs: Mapping[str, Any] | None = None,
    mri_slices: int | None = None,
    pet_air_threshold: float | None = None,
    suffix: str = ".nii.gz",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Simulate low-quality partners for high-quality volumes and write pairs plus a datalist.

    Args:
        inputs: high-quality volumes (NIfTI, NRRD, MHA files or DICOM series folders/files), or a
            mapping ``{patient_id: path or list of paths}``.
        task: ``"ct"`` (input in HU), ``"pet"`` (input in SUV; PET DICOM is converted) or ``"mri"``.
        out_dir: output folder (created if needed; must not lie inside an input folder).
        patient_ids: one patient id per input when ``inputs`` is a sequence. Default: the DICOM
            PatientID, else the file name without its image suffix (one patient per file).
        split: fractions of patients for training, validation, testing.
        seed: seeds the split and every simulation (case ``i`` uses ``seed + i``): reruns are identical.
        simulator_kwargs: arguments of the task's simulator (:class:`~monai_tat.transforms.LowDoseCT`,
            :class:`~monai_tat.transforms.LowCountPET`, :class:`~monai_tat.transforms.KSpaceTruncation`).
            CT takes the pixel spacing and slice thickness from each volume's geometry and PET scales
            its count level to the voxel volume unless they are given here.
        mri_slices: MRI keeps this many central slices along the axial axis (default from the
            task registry, the papers' 100).
        pet_air_threshold: SUV below which a voxel counts as air (PET air-only slices are
            dropped; default from the task registry, 0.1).
        suffix: output format, ``.nii.gz``, ``.nii``, ``.nrrd`` or ``.mha``.
        overwrite: replace existing pair files and datalist.
        progress: called as ``progress(done, total)`` after each volume.

    Returns:
        The path of ``datalist.json``.
    """
    key = check_task(task)
    cases = _collect_cases(inputs, patient_ids)
    out = Path(out_dir)
    targets = _plan_outputs(cases, out, suffix, overwrite)
    assignment = split_patients([c.patient for c in cases], split, seed)

    def build(tmp: Path) -> None:
        lists: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
        skipped: list[str] = []
        for index, case in enumerate(cases):
            lq_path, hq_path = targets[case.case]
            if _write_pair(case, key, tmp / lq_path.relative_to(out), tmp / hq_path.relative_to(out), seed + index,
                           simulator_kwargs, mri_slices, pet_air_threshold):
                lists[assignment[case.patient]].append(
                    {
                        "image": lq_path.relative_to(out).as_posix(),
                        "label": hq_path.relative_to(out).as_posix(),
                        "task": key,
                        "patient": case.patient,
                    }
                )
            else:
                skipped.append(case.case)
            if progress is not None:
                progress(index + 1, len(cases))

        datalist = {
            "name": f"monai-tat paired {key}",
            "description": "Low-quality images simulated from high-quality volumes by monai-tat; "
            "image = low quality (network input), label = high quality (target).",
            "task": key,
            "tensorImageSize": "3D",
            "simulation": {"simulator": type(simulator_for_task(key)).__name__, "seed": seed,
                           "arguments": dict(simulator_kwargs or {})},
            "skipped_air_only": skipped,
            "numTraining": len(lists["training"]),
            "numValidation": len(lists["validation"]),
            "numTest": len(lists["testing"]),
            **lists,
        }
        write_datalist(tmp / "datalist.json", datalist)

    # the pairs and the datalist were verified as they were written
    atomic_publish_dir(out, build, overwrite=overwrite, verify=False)
    return out / "datalist.json"


# ----------------------------------------------------------------------------------------------


def _collect_cases(
    inputs: Sequence[PathLike] | Mapping[str, PathLike | Sequence[PathLike]], patient_ids: Sequence[str] | None
) -> list[PairedCase]:
    pairs: list[tuple[Path, str]] = []
    if isinstance(inputs, Mapping):
        if patient_ids is not None:
            raise UserInputError("give patient ids either as the keys of inputs or as patient_ids, not both.")
        for patient, paths in inputs.items():
            group = [paths] if isinstance(paths, (str, Path)) else list(paths)
            pairs += [(Path(p), str(patient)) for p in group]
    else:
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        paths = [Path(p) for p in inputs]
        if patient_ids is not None and len(patient_ids) != len(paths):
            raise UserInputError(f"got {len(patient_ids)} patient ids for {len(paths)} inputs; give one per input.")
        ids = list(patient_ids) if patient_ids is not None else [_default_patient(p) for p in paths]
        pairs = list(zip(paths, (str(i) for i in ids)))
    if not pairs:
        raise UserInputError("no input volumes given; pass at least one NIfTI/NRRD/MHA file or DICOM folder.")
    for path, _ in pairs:
        if not path.exists():
            raise UserInputError(f"input not found: {path}")
    seen: dict[str, int] = {}
    cases = []
    for path, patient in pairs:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", patient).strip("._") or "case"
        seen[stem] = seen.get(stem, 0) + 1
        cases.append((path, patient, stem, seen[stem]))
    return [
        PairedCase(path, patient, stem if seen[stem] == 1 else f"{stem}_{n}") for path, patient, stem, n in cases
    ]


def _default_patient(path: Path) -> str:
    if path.is_dir() or is_dicom_file(path):
        header = read_dicom_header(dicom_series_files(path)[0])
        patient = str(header.get("PatientID", "") or "").strip()
        if patient:
            return patient
        return path.name if path.is_dir() else path.parent.name
    suffix = image_suffix(path)
    return path.name[: -len(suffix)] if suffix and path.name.lower().endswith(suffix) else path.stem


def _plan_outputs(cases: list[PairedCase], out: Path, suffix: str, overwrite: bool) -> dict[str, tuple[Path, Path]]:
    """Check every output before anything is written; create the folders."""
    if suffix not in OUTPUT_SUFFIXES:
        raise UserInputError(f"output suffix {suffix!r} is not supported; use {', '.join(OUTPUT_SUFFIXES)}.")
    for case in cases:
        src = case.source.resolve()
        # a DICOM series is its whole folder: writing into it would change the input
        folder = src if src.is_dir() else (src.parent if is_dicom_file(src) else None)
        if folder is not None and out.resolve().is_relative_to(folder):
            raise UserInputError(f"output folder {out} lies inside the input folder {folder}; choose another.")
    targets = {c.case: (out / "lq" / f"{c.case}{suffix}", out / "hq" / f"{c.case}{suffix}") for c in cases}
    existing = [p for pair in targets.values() for p in pair if p.exists()] + [
        p for p in [out / "datalist.json"] if p.exists()
    ]
    if existing and not overwrite:
        raise UserInputError(
            f"{existing[0]} exists ({len(existing)} output file(s) in all); choose another output folder "
            "or allow overwriting.",
            setting="overwrite",
        )
    if out.exists() and not out.is_dir():
        raise UserInputError(f"output folder {out} is a file; choose a folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = [c.source for c in cases]
    if not out.exists():
        check_output_path(out, inputs=inputs)  # its parent is writable: the dataset can be moved in
        return targets
    for lq, hq in targets.values():
        for path in (lq, hq):
            if path.parent.is_dir():
                check_output_path(path, overwrite=overwrite, inputs=inputs)
    check_output_path(out / "datalist.json", overwrite=overwrite, inputs=inputs)
    return targets


def _write_pair(
    case: PairedCase,
    task: str,
    lq_path: Path,
    hq_path: Path,
    seed: int,
    simulator_kwargs: Mapping[str, Any] | None,
    mri_slices: int | None,
    pet_air_threshold: float | None,
) -> bool:
    """Read, select slices, simulate, write LQ then HQ; False when a PET volume is air only."""
    volume = read_volume(case.source)
    spacing = np.asarray(volume.meta.get("spacing", np.ones(volume.ndim)), dtype=np.float64)
    if volume.ndim == 3:
        axis = axial_axis(volume.affine.cpu().numpy(), 3)
        start, stop = select_slices(volume.numpy(), task, axis, mri_slices, pet_air_threshold)
        if stop <= start:
            return False
        volume = crop_slices(volume, axis, start, stop)
    else:
        axis = None
    in_plane = [float(spacing[i]) for i in range(volume.ndim) if i != axis][:2]
    kwargs = {**geometry_arguments(task, in_plane, float(spacing[axis]) if axis is not None else None),
              **(simulator_kwargs or {})}
    simulator = simulator_for_task(task, seed=seed, **kwargs)

    hq = volume.numpy().astype(np.float32)
    slices = hq[None] if axis is None else np.moveaxis(hq, axis, -1)[None]  # (1, H, W[, D])
    lq = np.asarray(simulator(slices))[0]
    if axis is not None:
        lq = np.moveaxis(lq, -1, axis)
    meta = {k: v for k, v in volume.meta.items() if k != "affine"}
    lq_image = MetaTensor(torch.from_numpy(np.ascontiguousarray(lq, dtype=np.float32)), affine=volume.affine, meta=meta)
    lq_path.parent.mkdir(parents=True, exist_ok=True)
    hq_path.parent.mkdir(parents=True, exist_ok=True)
    write_volume(lq_image, lq_path)
    write_volume(volume, hq_path)
    return True
