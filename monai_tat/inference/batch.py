"""Restore many volumes with one model load: folders, list files and MONAI datalists, a manifest, resume, parts.

Each case goes through :func:`monai_tat.inference.restore_file` (the one file-to-file path) with
the network loaded once. After every case the manifest (JSON Lines: one object per case with
``input``, ``output``, ``task``, ``model``, ``network``, ``weights_sha256``, ``seconds``,
``status``, ``error``) is rewritten atomically, so a killed run leaves a correct record of what
is finished. A case that fails is recorded and the run goes on; the caller reports the failures.

Splitting: :func:`select_part` deals the sorted cases round-robin into ``num_parts`` parts, so
every machine of a scheduler array (SLURM ``--array``, Kubernetes indexed jobs) given the same
inputs and its own ``part_id`` restores a disjoint share, and the parts together cover every case
exactly once.

Example::

    from monai_tat.inference.batch import collect_cases, restore_batch
    cases = collect_cases("studies/")                     # each volume / series folder inside
    report = restore_batch(cases, "restored/", "tat", skip_existing=True)
    print(report.failed)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.devices import resolve_device
from monai_tat.inference.files import restore_file
from monai_tat.inference.models import load_model, model_path
from monai_tat.io.provenance import weights_sha256
from monai_tat.io import atomic_write
from monai_tat.io.dicom import is_dicom_file
from monai_tat.io.volume import IMAGE_SUFFIXES, OUTPUT_SUFFIXES, image_suffix
from monai_tat.tasks import check_task

__all__ = [
    "BatchCase", "BatchReport", "LIST_SUFFIXES", "BATCH_FORMATS", "is_batch_source", "collect_cases", "select_part",
    "output_path", "manifest_name", "read_manifest", "restore_batch",
]

#: Files that list the inputs: one path per line (.txt, .lst, .csv first column) or a MONAI datalist (.json).
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".json")
#: Output formats of a batch: an image suffix, or "dicom" (one series folder per case).
BATCH_FORMATS = tuple(s.lstrip(".") for s in OUTPUT_SUFFIXES) + ("dicom",)
_CASE_SUFFIXES = IMAGE_SUFFIXES + (".dcm",)

CaseCallback = Callable[[int, int, "BatchCase"], None]
RowCallback = Callable[[int, int, dict[str, Any]], None]


@dataclass(frozen=True)
class BatchCase:
    """One input to restore: a volume file or a DICOM series folder, with the name its output takes.

    ``task`` comes from a datalist item; None means the run's task (``"auto"`` by default).
    """

    input: Path
    name: str
    task: str | None = None


@dataclass
class BatchReport:
    """A run: its manifest rows (case order), manifest path, model loads (0 or 1), failed rows, skipped inputs."""

    rows: list[dict[str, Any]]
    manifest: Path
    model_loads: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """How many manifest rows have each status (``done``, ``skipped``, ``failed``)."""
        out: dict[str, int] = {}
        for row in self.rows:
            out[row["status"]] = out.get(row["status"], 0) + 1
        return out


def is_batch_source(path: str | Path) -> bool:
    """True for a list file (.txt / .lst / .csv / .json) or a folder that is not itself one DICOM series.

    A folder with DICOM files directly inside is one series (a single input); a folder of
    volumes or of series sub-folders is a batch.
    """
    p = Path(path)
    if p.is_file():
        return image_suffix(p) in LIST_SUFFIXES
    if not p.is_dir():
        return False
    return not any(is_dicom_file(child) for child in p.iterdir() if child.is_file())


def collect_cases(source: str | Path, *, datalist_key: str = "testing") -> list[BatchCase]:
    """The cases of a batch source, sorted by input path.

    Args:
        source: a folder (every image file, ``.dcm`` file and sub-folder inside is a case; hidden
            entries and other files are ignored), a list file (one path per line, relative paths
            from the list's folder, ``#`` comments; for .csv the first column, a header line
            ``image`` is skipped) or a MONAI datalist JSON (the ``datalist_key`` items'
            ``image``, with an optional ``task``).
        datalist_key: which list of a datalist JSON to restore.

    Raises:
        UserInputError: the source is missing, empty, unreadable, or two cases would write the
            same output name.
    """
    src = Path(source)
    if not src.exists():
        raise UserInputError(f"input {src} not found; give a folder of volumes, a list file or a datalist")
    if src.is_dir():
        entries = [c for c in sorted(src.iterdir()) if not c.name.startswith(".")]
        cases = [_case(c) for c in entries if c.is_dir() or image_suffix(c) in _CASE_SUFFIXES]
    elif image_suffix(src) == ".json":
        cases = _datalist_cases(src, datalist_key)
    elif image_suffix(src) in LIST_SUFFIXES:
        cases = _list_file_cases(src)
    else:
        raise UserInputError(f"{src} is neither a folder nor a list file ({', '.join(LIST_SUFFIXES)})")
    if not cases:
        raise UserInputError(f"{src} lists no volumes or DICOM series folders to restore")
    cases.sort(key=lambda c: str(c.input))
    _check_unique_names(cases, src)
    return cases


def _case(path: Path, task: str | None = None) -> BatchCase:
    suffix = image_suffix(path)
    name = path.name[: -len(suffix)] if suffix and path.is_file() else path.name
    return BatchCase(input=path, name=name or path.name, task=task)


def _list_file_cases(path: Path) -> list[BatchCase]:
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        text = line.strip()
        if image_suffix(path) == ".csv":
            text = text.split(",")[0].strip().strip('"')
            if n == 0 and text.lower() in ("image", "input", "path"):
                continue  # a header line
        if not text or text.startswith("#"):
            continue
        entry = Path(text).expanduser()
        cases.append(_case(entry if entry.is_absolute() else path.parent / entry))
    return cases


def _datalist_cases(path: Path, key: str) -> list[BatchCase]:
    from monai.data import load_decathlon_datalist

    try:
        items = load_decathlon_datalist(str(path), is_segmentation=False, data_list_key=key)
    except ValueError as err:
        raise UserInputError(f"datalist {path} has no '{key}' list ({err}); choose the list with its key") from err
    except (OSError, json.JSONDecodeError) as err:
        raise UserInputError(f"cannot read datalist {path} ({err})") from err
    cases = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping) or "image" not in item:
            raise UserInputError(f"datalist {path} '{key}' item {n} needs an 'image' entry, got {item!r}")
        task = item.get("task")
        cases.append(_case(Path(str(item["image"])), check_task(task) if task else None))
    return cases


def _check_unique_names(cases: Sequence[BatchCase], source: Path) -> None:
    seen: dict[str, Path] = {}
    for case in cases:
        if case.name in seen:
            raise UserInputError(
                f"{seen[case.name]} and {case.input} in {source} would both be written as '{case.name}'; "
                "rename one of them or restore them in separate runs"
            )
        seen[case.name] = case.input


def select_part(cases: Sequence[BatchCase], num_parts: int = 1, part_id: int = 0) -> list[BatchCase]:
    """Cases ``part_id``, ``part_id + num_parts``, ... of the sorted list (round-robin, 0-based part ids)."""
    if num_parts < 1:
        raise UserInputError(f"the number of parts must be at least 1, got {num_parts}", setting="num_parts")
    if not 0 <= part_id < num_parts:
        raise UserInputError(f"the part id must be from 0 to {num_parts - 1}, got {part_id}", setting="part_id")
    return [case for n, case in enumerate(cases) if n % num_parts == part_id]


def output_path(case: BatchCase, out_dir: str | Path, output_format: str) -> Path:
    """Where a case's output goes: ``out_dir/name.<format>``, or the series folder ``out_dir/name`` for DICOM."""
    if output_format not in BATCH_FORMATS:
        raise UserInputError(f"output format must be one of {', '.join(BATCH_FORMATS)}, got {output_format!r}")
    return Path(out_dir) / (case.name if output_format == "dicom" else f"{case.name}.{output_format}")


def manifest_name(num_parts: int = 1, part_id: int = 0) -> str:
    """``manifest.jsonl``, or ``manifest.part-K-of-N.jsonl`` so that parts sharing a folder never collide."""
    return "manifest.jsonl" if num_parts == 1 else f"manifest.part-{part_id}-of-{num_parts}.jsonl"


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a manifest written by :func:`restore_batch` ([] when there is none)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise UserInputError(f"manifest {p} line {n + 1} is not JSON ({err}); move the file away") from err
    return rows


def _write_manifest(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    text = "".join(json.dumps(row, sort_keys=False) + "\n" for row in rows)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=True)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def restore_batch(
    cases: Sequence[BatchCase],
    out_dir: str | Path,
    model: nn.Module | str | Path = "tat",
    *,
    task: str | None = "auto",
    output_format: str = "nii.gz",
    manifest: str | Path | None = None,
    skip_existing: bool = False,
    overwrite: bool = False,
    device: str | torch.device = "auto",
    on_case: CaseCallback | None = None,
    on_row: RowCallback | None = None,
    **restore_options: Any,
) -> BatchReport:
    """Restore every case into ``out_dir`` with one model load; record each in the manifest as it ends.

    Args:
        cases: from :func:`collect_cases` (and :func:`select_part`).
        out_dir: output folder (created when missing, its parent must exist).
        model: a network, or a :func:`~monai_tat.inference.load_model` spec, loaded once.
        task: the task of cases without their own (``"auto"``: from each input).
        output_format: an image suffix without the dot ("nii.gz", "nii", "nrrd", "mha") or "dicom"
            (a derived series folder per case; a case that is not DICOM fails).
        manifest: the JSON Lines manifest (default ``out_dir/manifest.jsonl``).
        skip_existing: leave a case whose output exists alone (a finished case: outputs appear
            only complete); its earlier manifest row is kept. Without it, and without
            ``overwrite``, existing outputs are refused before anything runs.
        overwrite: replace existing outputs.
        device: "auto", "cpu", "cuda" or "cuda:N".
        on_case: called ``(index, total, case)`` before each case.
        on_row: called ``(index, total, row)`` after each case, with its manifest row.
        restore_options: further :func:`~monai_tat.inference.restore_file` keywords (batch_size,
            axis, amp, self_ensemble, kspace_consistency, suv_overrides).

    Returns:
        A :class:`BatchReport`; ``failed`` lists the rows of failed cases (the caller decides the
        exit status).

    Raises:
        UserInputError: a problem that concerns the whole run (output folder, existing outputs,
            model), found before any case is restored.
    """
    out = Path(out_dir)
    _prepare_out_dir(out)
    manifest_path = Path(manifest) if manifest is not None else out / manifest_name()
    targets = [output_path(case, out, output_format) for case in cases]
    existing = [t for t in targets if t.exists()]
    if existing and not (skip_existing or overwrite):
        raise UserInputError(
            f"{len(existing)} of the {len(targets)} outputs exist already (first: {existing[0]}); skip them to resume "
            "an interrupted run, allow overwriting, or choose another output folder", setting="skip_existing"
        )
    pending = [not (skip_existing and t.exists()) for t in targets]
    loads = 0
    network_name, digest, model_text = "", "", str(model) if not isinstance(model, nn.Module) else type(model).__name__
    if any(pending):
        if not isinstance(model, nn.Module):
            model_path(model)  # a missing checkpoint is reported before anything is loaded
            model = load_model(model, resolve_device(device))
            loads = 1
        network_name, digest = type(model).__name__, weights_sha256(model)
    previous = {row.get("input"): row for row in read_manifest(manifest_path)}
    inputs = [str(case.input) for case in cases]
    # Earlier rows of this run's cases stay until their case is redone, so a killed rerun loses none.
    record = {key: previous[key] for key in inputs if key in previous}
    rows: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    skipped: list[str] = []
    restore_format = "dicom" if output_format == "dicom" else "auto"
    for index, (case, target, todo) in enumerate(zip(cases, targets, pending)):
        if on_case is not None:
            on_case(index, len(cases), case)
        base = {"input": str(case.input), "output": str(target)}
        if not todo:
            skipped.append(str(case.input))
            earlier = previous.get(str(case.input))
            row = dict(earlier) if earlier and earlier.get("status") == "done" else {
                **base, "task": case.task, "model": None, "network": None, "weights_sha256": None, "seconds": 0.0,
                "status": "skipped", "error": None}
        else:
            row = _restore_case(case, target, model, task, restore_format, overwrite, device, restore_options)
            row = {**base, "task": row["task"], "model": model_text, "network": network_name,
                   "weights_sha256": digest, "seconds": row["seconds"], "status": row["status"],
                   "error": row["error"]}
        rows.append(row)
        if row["status"] == "failed":
            failed.append(row)
        record[str(case.input)] = row
        _write_manifest(manifest_path, [record[key] for key in inputs if key in record])
        if on_row is not None:
            on_row(index, len(cases), row)
    return BatchReport(rows=rows, manifest=manifest_path, model_loads=loads, failed=failed, skipped=skipped)


def _prepare_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserInputError(f"output {out} is a file; several inputs need an output folder")
    if not out.exists():
        if not out.parent.is_dir():
            raise UserInputError(
                f"folder {out.parent} (where {out.name} would be created) does not exist; create it first"
            )
        out.mkdir()


def _restore_case(
    case: BatchCase, target: Path, model: nn.Module, task: str | None, restore_format: str, overwrite: bool,
    device: str | torch.device, options: Mapping[str, Any],
) -> dict[str, Any]:
    """Restore one case; a failure becomes a row instead of stopping the run (Ctrl-C still stops it)."""
    start = time.perf_counter()
    resolved: dict[str, str] = {}
    try:
        result = restore_file(
            case.input, target, model, task=case.task or task, device=device, overwrite=overwrite,
            output_format=restore_format, on_task=lambda t: resolved.setdefault("task", t), **options,
        )
        status, error, task_name = "done", None, result.task
    except Exception as err:  # noqa: BLE001 - every per-case failure is recorded and reported at the end
        status, error, task_name = "failed", _one_line(err), resolved.get("task", case.task)
    return {"task": task_name, "seconds": round(time.perf_counter() - start, 3), "status": status, "error": error}
