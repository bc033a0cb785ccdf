"""Write a slice subset of a prepared cache's pairs within a size budget, to carry them to a GPU machine.

Training draws 2D patches from every slice, so a few slices of each volume keep the variety of
subjects, contrasts and degradations at a fraction of the bytes. Each training pair keeps the same
number ``K`` of evenly spaced slices (the largest ``K`` whose compressed files fit ``--megabytes``);
validation pairs keep their central ``--val-slices`` slices, the ones the training run validates on.
Degraded and reference volumes keep the same slices, so the pairs stay pixel-aligned::

    python recipes/demo_weights/subset_cache.py CACHE/pairs/datalist.json SUBSET --megabytes 40

``SUBSET/datalist.json`` is a datalist like the original one (same items, relative paths) with a
``subset`` record of the slices kept. ``--int16`` stores each volume as 16-bit integers with
NIfTI's per-volume scale and offset (``scl_slope`` / ``scl_inter``, chosen by nibabel to span the
volume's range): readers get floats back within half a step (about 1/65,000 of the volume's
range, e.g. 0.06 HU for a CT from -1024 to 3071 HU). It shrinks the pairs a cache stores as float32
(the PET pairs: 2.3 times smaller); CT and MRI pairs are 16-bit integers there already.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["evenly_spaced", "central", "subset_datalist", "main"]


def evenly_spaced(count: int, keep: int) -> list[int]:
    """``keep`` slice indices spread over ``range(count)`` (all of them when ``keep >= count``)."""
    if keep >= count:
        return list(range(count))
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, keep)})


def central(count: int, keep: int) -> list[int]:
    """The central ``keep`` slice indices of ``range(count)``."""
    start = max(0, (count - keep) // 2)
    return list(range(start, min(count, start + keep)))


def _slices(path: Path) -> int:
    shape = nib.load(str(path)).shape
    return int(shape[2]) if len(shape) > 2 else 1


def _subset_image(source: Path, indices: list[int] | None, int16: bool) -> nib.Nifti1Image:
    """The slices ``indices`` of ``source`` (all when None), as float data stored in its own type or
    as scaled 16-bit integers."""
    image = nib.load(str(source))
    data = np.asarray(image.get_fdata(dtype=np.float32) if int16 else image.dataobj)
    if data.ndim > 2 and indices is not None:
        data = data[:, :, indices]
    header = image.header.copy()
    if int16:
        header.set_slope_inter(None, None)  # nibabel chooses the scale that spans this subset's range
    subset = nib.Nifti1Image(data, image.affine, header)
    if int16:
        subset.set_data_dtype(np.int16)
    return subset


def _compressed_bytes(source: Path, int16: bool) -> int:
    """Bytes of ``source`` as the subset would store it (all slices, gzip-compressed)."""
    if not int16:
        return source.stat().st_size
    return len(gzip.compress(_subset_image(source, None, True).to_bytes(), compresslevel=6))


def _write_subset(source: Path, target: Path, indices: list[int], int16: bool = False) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    nib.save(_subset_image(source, indices, int16), str(target))


def subset_datalist(datalist: Path, out: Path, megabytes: float, val_slices: int = 4,
                    int16: bool = False) -> dict[str, Any]:
    """Write the subset of ``datalist``'s ``training`` and ``validation`` pairs into ``out``
    (as scaled 16-bit integers when ``int16``).

    Returns the new datalist (also written to ``out/datalist.json``).

    Raises:
        SystemExit: ``out`` already holds a datalist (nothing is overwritten), or even one slice of
            each training pair does not fit the budget.
    """
    if (out / "datalist.json").exists():
        raise SystemExit(f"{out / 'datalist.json'} exists: choose a new folder")
    lists = json.loads(datalist.read_text(encoding="utf-8"))
    root = datalist.parent
    training, validation = lists.get("training", []), lists.get("validation", [])
    keys = ("image", "label")
    # compressed bytes per slice of each pair, as the subset stores them
    per_slice, slices = [], []
    for item in training:
        n = _slices(root / item["image"])
        slices.append(n)
        per_slice.append(sum(_compressed_bytes(root / item[k], int16) for k in keys) / n)
    validation_bytes = sum(
        sum(_compressed_bytes(root / item[k], int16) for k in keys) * min(1.0, val_slices / _slices(root / item["image"]))
        for item in validation)
    budget = megabytes * 1e6 - validation_bytes
    keep = 0
    while keep < max(slices, default=0) and sum(b * min(n, keep + 1) for b, n in zip(per_slice, slices)) <= budget:
        keep += 1
    if keep == 0 and training:
        raise SystemExit(f"one slice of each training pair needs more than {megabytes} MB; raise --megabytes")
    record: dict[str, list[int]] = {}
    new_lists: dict[str, list[dict[str, Any]]] = {"training": [], "validation": []}
    for split, items in (("training", training), ("validation", validation)):
        for item in items:
            n = _slices(root / item["image"])
            indices = evenly_spaced(n, keep) if split == "training" else central(n, val_slices)
            for k in keys:
                _write_subset(root / item[k], out / item[k], indices, int16)
            record[item["image"]] = indices
            new_lists[split].append(dict(item))
    result = {**{k: v for k, v in lists.items() if k not in ("training", "validation", "testing")}, **new_lists,
              "subset": {"source": datalist.name, "training_slices_per_pair": keep, "val_slices": val_slices,
                         "stored_as": "int16, scaled" if int16 else "as in the cache",
                         "slices": record}}
    (out / "datalist.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python recipes/demo_weights/subset_cache.py", description=__doc__.split("\n\n")[0])
    p.add_argument("datalist", type=Path, help="a prepared pairs datalist (CACHE/pairs/datalist.json)")
    p.add_argument("out", type=Path, help="new folder for the subset and its datalist.json")
    p.add_argument("--megabytes", type=float, default=40.0, help="size budget of the written files (default 40)")
    p.add_argument("--val-slices", type=int, default=4, help="central slices kept of each validation pair (default 4)")
    p.add_argument("--int16", action="store_true",
                   help="store scaled 16-bit integers (within half a step of 1/65,000 of each volume's range)")
    args = p.parse_args(argv)
    if not args.datalist.is_file():
        p.error(f"{args.datalist} is not a file")
    result = subset_datalist(args.datalist, args.out, args.megabytes, args.val_slices, args.int16)
    written = sum(f.stat().st_size for f in args.out.rglob("*.nii*"))
    print(f"{len(result['training'])} training and {len(result['validation'])} validation pairs, "
          f"{result['subset']['training_slices_per_pair']} slices per training pair, {written / 1e6:.1f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
