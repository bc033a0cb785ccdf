"""MONAI decathlon-style datalist files (``training`` / ``validation`` / ``testing`` lists): written
and read here.

Items are ``{"image": LQ, "label": HQ, "task": "ct" | "pet" | "mri"}``; several files (one per task
or per source) are read as one list.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_tat.errors import UserInputError
from monai_tat.io import atomic_write
from monai_tat.tasks import check_task

__all__ = ["load_datalist", "write_datalist"]


def write_datalist(path: str | Path, datalist: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``datalist`` as indented JSON, atomically; refuse to replace a file unless ``overwrite``.

    Paths inside should be relative to the file's folder, which is what
    ``monai.data.load_decathlon_datalist`` resolves them against.
    """
    text = json.dumps(datalist, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)


def load_datalist(
    datalist: str | os.PathLike | Sequence[str | os.PathLike], key: str = "training",
    base_dir: str | os.PathLike | None = None, require_label: bool = True, required: bool = True,
    require_task: bool = True,
) -> list[dict[str, Any]]:
    """Read the ``key`` list of decathlon-style datalists of ``{"image", "label", "task"}`` items.

    Several files (e.g. one per task, as ``monai_tat.data.build_paired_dataset`` writes them) are
    concatenated. Relative ``image`` / ``label`` paths are resolved against ``base_dir``, by default
    the folder of the datalist that lists them; ``task`` is checked against
    ``monai_tat.transforms.TASKS`` and lower-cased.

    Args:
        datalist: path of the JSON file, or a list of paths.
        key: ``"training"``, ``"validation"`` or ``"testing"``.
        base_dir: folder that relative paths start from (default: each datalist's folder).
        require_label: every item must have a ``label`` (HQ) entry (not needed for inference).
        required: raise if no file has ``key`` items; otherwise return ``[]``.
        require_task: every item must have a ``task``; without it (inference), items may leave it
            out and ``monai_tat.inference.ResolveTaskd`` finds it from the image.

    Returns:
        list of dicts with absolute ``image`` (and ``label``) paths and a ``task`` (when given).
    """
    paths = [datalist] if isinstance(datalist, (str, os.PathLike)) else list(datalist)
    out: list[dict[str, Any]] = []
    for path in map(Path, paths):
        out += _read_datalist(path, key, base_dir, require_label, require_task)
    if not out and required:
        names = ", ".join(str(p) for p in paths)
        raise UserInputError(f"datalist {names} has no '{key}' items; add a '{key}' list of image/label/task entries.")
    return out


def _read_datalist(path: Path, key: str, base_dir: str | os.PathLike | None, require_label: bool,
                   require_task: bool = True) -> list[dict]:
    if not path.is_file():
        raise UserInputError(
            f"datalist not found: {path}; pass --dataset_dir (holding datalist.json) "
            "or --datalist /path/to/datalist.json."
        )
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise UserInputError(f"datalist {path} is not valid JSON ({err}).") from err
    items = (content.get(key) if isinstance(content, dict) else None) or []
    root = Path(base_dir) if base_dir is not None else path.parent
    out = []
    for n, item in enumerate(items):
        task = item.get("task") if isinstance(item, Mapping) else None
        if not isinstance(item, Mapping) or "image" not in item or (require_task and task is None):
            needs = "'image' and 'task' entries" if require_task else "an 'image' entry"
            raise UserInputError(f"datalist {path} '{key}' item {n} needs {needs}, got {item!r}.")
        if require_label and "label" not in item:
            raise UserInputError(f"datalist {path} '{key}' item {n} needs a 'label' (high-quality image) entry.")
        entry = dict(item)
        if task is not None:
            entry["task"] = check_task(task)
        else:
            entry.pop("task", None)  # found from the image at inference (ResolveTaskd)
        for field in ("image", "label"):
            if field in entry:
                entry[field] = str((root / str(entry[field])).resolve())
                _check_image_file(Path(entry[field]), f"datalist {path} '{key}' item {n}: {field}")
        out.append(entry)
    return out


def _check_image_file(image: Path, where: str) -> None:
    """A datalist's file exists and is not visibly truncated (header against size; cheap)."""
    from monai_tat.io.atomic import quick_image_check

    if not image.exists():
        raise UserInputError(f"{where} file not found: {image}; fix the path in the datalist")
    problem = quick_image_check(image)
    if problem:
        raise UserInputError(f"{where} file {image} cannot be read ({problem}); replace the file or drop the item")
