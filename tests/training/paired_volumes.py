"""A tiny synthetic paired dataset on disk: a few small NIfTI volumes per task with a datalist."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

# HQ intensity range (physical units) and an LQ degradation per task.
_RANGES = {"ct": (-1000.0, 200.0), "pet": (0.0, 8.0), "mri": (0.0, 1500.0)}


def write_pairs(folder: Path, tasks=("ct", "pet", "mri"), shape=(24, 20, 3), per_task: int = 1, seed: int = 0) -> Path:
    """Write ``per_task`` (LQ, HQ) NIfTI pairs per task and ``datalist.json`` (training/validation/testing)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    items = []
    for task in tasks:
        lo, hi = _RANGES[task]
        for n in range(per_task):
            phantom = ((yy / 0.8) ** 2 + (xx / 0.6) ** 2 < 1).astype(np.float32)
            phantom += 0.5 * (((yy - 0.2) / 0.2) ** 2 + (xx / 0.2) ** 2 < 1)
            hq = np.stack([phantom * (1 + 0.1 * k) for k in range(shape[2])], axis=-1)
            hq = (lo + (hi - lo) * hq / hq.max()).astype(np.float32)
            lq = (hq + 0.05 * (hi - lo) * rng.standard_normal(hq.shape)).astype(np.float32)
            affine = np.diag([1.0, 1.0, 2.0, 1.0])
            for kind, arr in (("lq", lq), ("hq", hq)):
                (folder / task).mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(arr, affine), folder / task / f"case{n}_{kind}.nii.gz")
            items.append({"image": f"{task}/case{n}_lq.nii.gz", "label": f"{task}/case{n}_hq.nii.gz", "task": task})
    datalist = {"training": items, "validation": items[:: max(1, per_task)], "testing": items[:: max(1, per_task)]}
    (folder / "datalist.json").write_text(json.dumps(datalist, indent=1))
    return folder / "datalist.json"
