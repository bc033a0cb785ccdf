"""Helpers for the bundle tests: a tiny paired dataset, tiny network overrides, running MONAI's CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
SCHEMA = Path(__file__).resolve().parent / "meta_schema_20240725.json"  # MONAI's schema, copied (no download)
SCHEMA_MD5 = "76e1add273836515d0bbb3bc71962474"
BUNDLE_NAMES = ("tat_allinone", "amir_allinone")

# Tiny network configurations and batch settings so that a few iterations take seconds on a CPU.
TINY = {
    "tat_allinone": {
        "network_def#dim": 8, "network_def#num_blocks": [1, 1, 1, 1], "network_def#num_refinement_blocks": 1,
    },
    "amir_allinone": {
        "network_def#dim": 6, "network_def#num_blocks": [1, 1, 1, 1], "network_def#num_refinement_blocks": 1,
    },
}
TINY_BATCH = {"tat_allinone": {"samples_per_task": 1}, "amir_allinone": {"batch_size": 3}}
NETWORK_NAMES = {"tat_allinone": "TAT", "amir_allinone": "AMIR"}
_RANGES = {"ct": (-1000.0, 200.0), "pet": (0.0, 8.0), "mri": (0.0, 1500.0)}


def write_pairs(folder: Path, shape=(36, 28, 3), seed: int = 0) -> Path:
    """One (LQ, HQ) NIfTI pair per task under ``folder`` and ``datalist.json`` with all three lists."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    items = []
    for task, (lo, hi) in _RANGES.items():
        body = ((yy / 0.8) ** 2 + (xx / 0.6) ** 2 < 1) + 0.5 * (((yy - 0.2) / 0.25) ** 2 + (xx / 0.25) ** 2 < 1)
        hq = np.stack([body * (1 + 0.1 * k) for k in range(shape[2])], axis=-1)
        hq = (lo + (hi - lo) * hq / hq.max()).astype(np.float32)
        lq = (hq + 0.05 * (hi - lo) * rng.standard_normal(hq.shape)).astype(np.float32)
        (folder / task).mkdir(parents=True, exist_ok=True)
        for kind, arr in (("lq", lq), ("hq", hq)):
            nib.save(nib.Nifti1Image(arr, np.diag([0.8, 0.8, 2.0, 1.0])), folder / task / f"{kind}.nii.gz")
        items.append({"image": f"{task}/lq.nii.gz", "label": f"{task}/hq.nii.gz", "task": task})
    items[0]["patient"] = "p1"  # extra keys on some items only, as datalists of several sources have
    (folder / "datalist.json").write_text(json.dumps({"training": items, "validation": items, "testing": items}))
    return folder / "datalist.json"


def cli_args(overrides: dict) -> list[str]:
    """``--key value`` pairs as MONAI's fire-based CLI parses them (lists as Python literals)."""
    args = []
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a command with the repository importable and one thread per process; fail loudly."""
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def bundle_run(config: str | list[str], cwd: Path, overrides: dict, launcher: list[str] | None = None):
    """``python -m monai.bundle run --config_file configs/<config>`` (or a list of configs) in ``cwd``."""
    config_file = str([f"configs/{c}" for c in config]) if isinstance(config, list) else f"configs/{config}"
    launcher = launcher or [sys.executable]
    return run_cli([*launcher, "-m", "monai.bundle", "run", "--config_file", config_file, *cli_args(overrides)], cwd)


def copy_bundle(name: str, dest: Path, weights: bool = False) -> Path:
    """A working copy of ``bundles/<name>`` (without the shipped weights unless ``weights``; runs write
    models/, eval/ and runs/)."""
    ignore = shutil.ignore_patterns("eval", "runs", *(() if weights else ("models",)))
    return Path(shutil.copytree(BUNDLES / name, dest / name, ignore=ignore))


def train_overrides(name: str, dataset_dir: Path, iterations: int = 4) -> dict:
    return {
        "dataset_dir": dataset_dir, "max_iterations": iterations, "val_interval": 2, "checkpoint_interval": 2,
        "log_interval": 1, "num_workers": 0, "patch_size": [32, 32], **TINY_BATCH[name], **TINY[name],
    }
