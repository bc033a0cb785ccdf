"""PSNR drift of the fast execution modes against float32, on the demo samples with the shipped weights.

Speed-ups count only if the restored images keep their quality. For every task's demo phantom
(:func:`monai_tat.demo.samples.make_sample`) this restores the low-quality volume through the
engine (:func:`monai_tat.inference.restore_volume`) once per mode and prints, per task and mode,
the PSNR against the reference in the papers' convention (mean over slices), its drift from the
float32 eager run (dB), and the largest voxel difference from that run in physical units (HU,
SUV, MR signal). ``--json`` writes the rows.

Modes: ``fp32`` (eager, the baseline), ``bf16`` / ``fp16`` (the engine's autocast, CUDA only),
``script`` (``torch.jit.script``, what the bundles' export gives), and ``<precision>+compile``
(``torch.compile``). The GPU target: bf16 + compile within 0.05 dB of fp32.

Usage::

    python -m monai_tat.benchmarks drift                                   # CPU: fp32, script
    python -m monai_tat.benchmarks drift --device cuda --modes fp32 bf16 fp16 bf16+compile --size 512
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.metrics.image_quality import mean_slice_psnr

__all__ = ["DriftRow", "MODES", "prepare_network", "measure_drift", "main"]

MODES = ("fp32", "bf16", "fp16", "script", "fp32+compile", "bf16+compile", "fp16+compile")


@dataclass
class DriftRow:
    """One task x mode: PSNR (dB) of the restored volume, its drift from fp32 and the largest voxel change."""

    task: str
    mode: str
    psnr_db: float
    drift_db: float
    max_abs_diff: float
    input_psnr_db: float


def _check_modes(modes: Sequence[str], device: torch.device) -> None:
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise UserInputError(f"unknown mode(s) {unknown}; choose from {list(MODES)}.")
    if device.type != "cuda":
        half = [m for m in modes if m.split("+")[0] in ("bf16", "fp16")]
        if half:
            raise UserInputError(f"mode(s) {half} need a CUDA device: the engine uses autocast on GPUs only.")


def prepare_network(model: str, mode: str, device: torch.device) -> tuple[nn.Module, Optional[str]]:
    """The demo network ``model`` ("tat" / "amir") set up for ``mode``; returns (module, engine amp)."""
    from monai_tat.inference import load_model

    network = load_model(model, device=device)
    precision, _, extra = mode.partition("+")
    if mode == "script":
        network = torch.jit.script(network)
        precision = "fp32"
    elif extra == "compile":
        network = torch.compile(network)
    return network, (None if precision == "fp32" else precision)


def measure_drift(model: str = "tat", modes: Sequence[str] = ("fp32", "script"), tasks: Sequence[str] = ("ct", "pet", "mri"),
                  size: int = 192, slices: int = 2, device: str = "cpu", seed: int = 2024) -> list[DriftRow]:
    """Restore each task's demo phantom in every mode; rows in task-then-mode order (fp32 always first)."""
    from monai_tat.demo.samples import make_sample
    from monai_tat.inference import restore_volume
    from monai_tat.inference.devices import resolve_device

    target = resolve_device(device)
    modes = ["fp32", *[m for m in modes if m != "fp32"]]
    _check_modes(modes, target)
    samples = {task: make_sample(task, size=size, slices=slices, seed=seed) for task in tasks}
    networks = {mode: prepare_network(model, mode, target) for mode in modes}  # script / compile once per mode
    rows: list[DriftRow] = []
    for task, sample in samples.items():
        reference = sample.reference.numpy()
        input_psnr = mean_slice_psnr(sample.low_quality.numpy(), reference, task)
        baseline, fp32_db = None, math.nan
        for mode, (network, amp) in networks.items():
            restored = restore_volume(sample.low_quality, network, task=task, device=target, amp=amp).numpy()
            value = mean_slice_psnr(restored, reference, task)
            if baseline is None:  # fp32 runs first
                baseline, fp32_db = restored, value
            rows.append(DriftRow(task, mode, value, value - fp32_db, float(np.abs(restored - baseline).max()), input_psnr))
    return rows


def _table(rows: Sequence[DriftRow]) -> str:
    lines = [f"{'task':<5} {'mode':<14} {'input dB':>9} {'PSNR dB':>9} {'drift dB':>9} {'max |diff|':>11}"]
    lines += [f"{r.task:<5} {r.mode:<14} {r.input_psnr_db:>9.3f} {r.psnr_db:>9.3f} {r.drift_db:>+9.4f} {r.max_abs_diff:>11.4g}"
              for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks drift", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="tat", choices=("tat", "amir"), help="shipped demo weights to use")
    parser.add_argument("--modes", nargs="+", default=["fp32", "script"], help=f"from {list(MODES)}")
    parser.add_argument("--tasks", nargs="+", default=["ct", "pet", "mri"], choices=("ct", "pet", "mri"))
    parser.add_argument("--size", type=int, default=192, help="in-plane matrix of the CT / MRI phantoms (PET: 2/3)")
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        rows = measure_drift(args.model, args.modes, args.tasks, args.size, args.slices, args.device)
    except UserInputError as err:
        print(f"error: {err}")
        return 2
    print(_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "size": args.size, "device": args.device,
                                         "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
