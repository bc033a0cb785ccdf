"""One prepared check of the GPU path: ``python -m monai_tat.benchmarks gpu-check``.

Runs on one GPU in a few minutes and prints one table, a row per check:

- ``cuda tests``: ``pytest -m cuda`` (the tests that need a CUDA device) in the repository's tests.
- ``network``: TAT and AMIR, shipped (demo weights) and paper-size (random weights), at 128 / 256 /
  512 px in fp32, bf16 and fp16 autocast, and ``+compile`` (``torch.compile``) in bf16: slices/s
  at the batch shown, peak GPU memory above the start, the largest |difference| from fp32 and the
  PSNR drift against fp32 (PSNR of each output against the clean phantom minus fp32's).
- ``oom retry``: a real out-of-memory forced by capping the process's GPU memory
  (``torch.cuda.set_per_process_memory_fraction``); the engine must halve the batch until it fits,
  and its output must match a one-slice-at-a-time restoration.
- ``ct 512x512x600``: a CT volume through the engine with the GPU limited to 8 GB (the rest of the
  memory is held), peak memory and seconds.
- ``bundle inference``: the TAT bundle's ``inference.json`` on the GPU against the engine's restore
  of the same file on the same device.

Each row ends PASS or FAIL (or "skip" with the reason); the exit status is 1 when any row failed.
Checks that cannot finish within ``--budget-s`` seconds are skipped and say so. ``--device cpu
--quick`` is a dry run of every code path at tiny sizes (seconds; run by the tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

__all__ = ["CheckRow", "run_checks", "main"]

REPO = Path(__file__).resolve().parents[2]
#: Largest |fp32 - half| on the [0, 1] model scale, and PSNR drift in dB, a network row may show.
MAX_ABS_DIFF = {"fp32": 1e-3, "bf16": 0.05, "fp16": 0.02}
MAX_DRIFT_DB = 0.3
#: GPU-vs-GPU restorations differ by batch (cuDNN picks algorithms per shape; TF32 convolutions by
#: default): the bound, as a fraction of the volume's intensity range.
BATCH_TOLERANCE = 2e-3


@dataclass
class CheckRow:
    check: str
    setting: str
    slices_per_second: Optional[float] = None
    peak_memory_mb: Optional[float] = None
    max_abs_diff: Optional[float] = None
    drift_db: Optional[float] = None
    status: str = "PASS"
    note: str = ""


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _psnr(x: torch.Tensor, reference: torch.Tensor) -> float:
    mse = float((x.float() - reference.float()).square().mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _phantom(size: int, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy, clean) ``(batch, 1, size, size)`` in [0, 1]: discs of soft tissue with noise."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, size)
    r = axis[:, None] ** 2 + axis[None, :] ** 2
    clean = (0.25 + 0.4 * (r < 0.7) + 0.2 * ((axis[:, None] - 0.3) ** 2 + axis[None, :] ** 2 < 0.05)).clamp(0, 1)
    clean = clean.expand(batch, 1, size, size).contiguous()
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    return noisy, clean


def _networks(quick: bool) -> dict[str, Callable[[], nn.Module]]:
    from monai_tat.inference import load_model
    from monai_tat.networks import build_network

    builders: dict[str, Callable[[], nn.Module]] = {
        "TAT shipped": lambda: load_model("tat"),
        "AMIR shipped": lambda: load_model("amir"),
    }
    if not quick:
        builders["TAT paper"] = lambda: build_network("TAT").eval()
        builders["AMIR paper"] = lambda: build_network("AMIR").eval()
    return builders


def _forward(model: nn.Module, x: torch.Tensor, precision: str) -> torch.Tensor:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    with torch.inference_mode(), (torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext()):
        y = model(x)
    y = y[0] if isinstance(y, tuple) else y
    return y.float()


def _time_mode(model: nn.Module, x: torch.Tensor, precision: str, repeats: int,
               warm_up: bool = True) -> tuple[float, Optional[int], torch.Tensor]:
    """(median seconds per call after one warm-up call, peak CUDA bytes above the start, output)."""
    device = x.device
    if warm_up:  # for compiled modules: the compilation
        _forward(model, x, precision)
        _synchronize(device)
    start_bytes = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        start_bytes = torch.cuda.memory_allocated(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = _forward(model, x, precision)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) - start_bytes if device.type == "cuda" else None
    return float(np.median(times)), peak, out


def network_rows(device: torch.device, sizes: Sequence[int], precisions: Sequence[str], compile_precision: Optional[str],
                 batch: int, repeats: int, quick: bool, deadline: float) -> list[CheckRow]:
    rows: list[CheckRow] = []
    for name, build in _networks(quick).items():
        model = build().to(device).eval()
        compiled = torch.compile(model) if compile_precision else None
        for size in sizes:
            x, clean = _phantom(size, batch)
            x, clean = x.to(device), clean.to(device)
            modes = [(p, p, model) for p in ["fp32", *[p for p in precisions if p != "fp32"]]]
            if compiled is not None:
                modes.append((f"{compile_precision}+compile", compile_precision, compiled))
            reference: Optional[torch.Tensor] = None
            reference_db = math.nan
            for label, precision, module in modes:
                setting = f"{name} {size}px {label} batch {batch}"
                if time.monotonic() > deadline:
                    rows.append(CheckRow("network", setting, status="skip", note="time budget spent"))
                    continue
                try:
                    seconds, peak, out = _time_mode(module, x, precision, repeats, warm_up=not quick)
                except Exception as err:  # a failing mode is a FAIL row, the others still run
                    rows.append(CheckRow("network", setting, status="FAIL", note=f"{type(err).__name__}: {str(err)[:120]}"))
                    continue
                db = _psnr(out, clean)
                row = CheckRow("network", setting, slices_per_second=batch / seconds,
                               peak_memory_mb=None if peak is None else peak / 2**20)
                if reference is None:
                    reference, reference_db = out, db
                row.max_abs_diff = float((out - reference).abs().max())
                row.drift_db = db - reference_db
                finite = bool(torch.isfinite(out).all())
                tolerance = MAX_ABS_DIFF[precision]
                if not finite or row.max_abs_diff > tolerance or abs(row.drift_db) > MAX_DRIFT_DB:
                    row.status = "FAIL"
                    row.note = "non-finite output" if not finite else f"beyond {tolerance:g} / {MAX_DRIFT_DB} dB"
                rows.append(row)
        del model, compiled
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


class _BatchLog(nn.Module):
    """Wraps a network and records the batch size of every call (including calls that fail)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network, self.batches = network, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(int(x.shape[0]))
        return self.network(x)


def oom_row(device: torch.device, size: int, slices: int) -> CheckRow:
    """A real out-of-memory: the process's GPU memory capped to hold about a third of the batch."""
    from monai_tat.benchmarks.volumes import ct_like_volume
    from monai_tat.inference import load_model, restore_volume

    setting = f"TAT shipped, {size}x{size}x{slices} CT, batch {slices} under a memory cap"
    if device.type != "cuda":
        return CheckRow("oom retry", setting, status="skip", note="needs a CUDA device")
    volume = ct_like_volume((size, size, slices))
    network = _BatchLog(load_model("tat", device=device))
    expected = restore_volume(volume, network, "ct", device=device, batch_size=1)
    network.batches.clear()
    torch.cuda.empty_cache()
    _synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    restore_volume(volume[..., :1], network, "ct", device=device, batch_size=1)
    per_slice = torch.cuda.max_memory_allocated(device) - before
    network.batches.clear()
    total = torch.cuda.get_device_properties(device).total_memory
    cap = before + per_slice * max(2, slices // 3)
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
    try:
        start = time.perf_counter()
        restored = restore_volume(volume, network, "ct", device=device, batch_size=slices)
        seconds = time.perf_counter() - start
    except Exception as err:
        return CheckRow("oom retry", setting, status="FAIL", note=f"{type(err).__name__}: {str(err)[:120]}")
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    span = float(volume.max() - volume.min())
    difference = float((restored.as_tensor() - expected.as_tensor()).abs().max())
    halved = len(network.batches) > 0 and network.batches[0] == slices and min(network.batches) < slices
    row = CheckRow("oom retry", setting, slices_per_second=slices / seconds, max_abs_diff=difference,
                   note=f"batches tried {sorted(set(network.batches), reverse=True)}; cap {cap / 2**20:.0f} MB")
    if not halved or difference > BATCH_TOLERANCE * span:
        row.status = "FAIL"
        row.note += "; no halving" if not halved else f"; differs from one slice at a time by {difference:.3g}"
    return row


def large_ct_row(device: torch.device, shape: Sequence[int], limit_gb: Optional[float], amp: Optional[str]) -> CheckRow:
    """A whole CT volume through the engine with the GPU limited to ``limit_gb``."""
    from monai_tat.benchmarks.measuring import gpu_memory_limit as _gpu_memory_limit
    from monai_tat.benchmarks.volumes import ct_like_volume
    from monai_tat.inference import load_model, restore_volume

    volume = ct_like_volume(shape)
    label = "x".join(str(s) for s in shape)
    setting = f"TAT shipped, CT {label}, {amp or 'fp32'}" + (f", GPU limited to {limit_gb:g} GB" if limit_gb else "")
    network = load_model("tat", device=device)
    try:
        with _gpu_memory_limit(device, limit_gb if device.type == "cuda" else None) as held:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            restored = restore_volume(volume, network, "ct", device=device, amp=amp)
            seconds = time.perf_counter() - start
            peak = torch.cuda.max_memory_allocated(device) - held if device.type == "cuda" else None
    except Exception as err:
        return CheckRow("ct volume", setting, status="FAIL", note=f"{type(err).__name__}: {str(err)[:120]}")
    row = CheckRow("ct volume", setting, slices_per_second=shape[2] / seconds,
                   peak_memory_mb=None if peak is None else peak / 2**20, note=f"{seconds:.1f} s")
    if not bool(torch.isfinite(restored.as_tensor()).all()) or tuple(restored.shape) != tuple(shape):
        row.status, row.note = "FAIL", row.note + "; wrong shape or non-finite output"
    elif peak is not None and limit_gb and peak > limit_gb * 2**30:
        row.status, row.note = "FAIL", row.note + f"; peak above {limit_gb:g} GB"
    return row


def bundle_row(device: torch.device, shape: Sequence[int]) -> CheckRow:
    """The TAT bundle's inference.json on ``device`` against the engine on the same device."""
    import nibabel as nib

    from monai_tat.benchmarks.volumes import ct_like_volume
    from monai_tat.inference import load_model, restore_volume
    from monai_tat.io import read_volume

    bundle = REPO / "bundles" / "tat_allinone"
    setting = f"tat_allinone inference.json, CT {'x'.join(map(str, shape))} on {device}"
    if not bundle.is_dir():
        return CheckRow("bundle inference", setting, status="skip", note="no bundles folder (not a source checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(shutil.copytree(bundle, Path(tmp) / "bundle", ignore=shutil.ignore_patterns("eval", "runs")))
        data = Path(tmp) / "data"
        (data / "ct").mkdir(parents=True)
        volume = ct_like_volume(shape)
        nib.save(nib.Nifti1Image(volume.numpy(), volume.affine.numpy()), data / "ct" / "lq.nii.gz")
        (data / "datalist.json").write_text(json.dumps({"testing": [{"image": "ct/lq.nii.gz", "task": "ct"}]}))
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
                   "--dataset_dir", str(data), "--device", f"$torch.device('{device}')"]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            return CheckRow("bundle inference", setting, status="FAIL", note=(proc.stderr or proc.stdout).strip()[-150:])
        written = sorted((root / "eval" / "restored").rglob("*.nii.gz"))
        if len(written) != 1:
            return CheckRow("bundle inference", setting, status="FAIL", note=f"{len(written)} outputs written")
        restored = read_volume(written[0]).as_tensor()
        expected = restore_volume(read_volume(data / "ct" / "lq.nii.gz"), load_model(root, device=device), "ct",
                                  device=device).as_tensor()
    difference = float((restored - expected).abs().max())
    span = float(volume.max() - volume.min())
    row = CheckRow("bundle inference", setting, slices_per_second=shape[2] / seconds, max_abs_diff=difference,
                   note=f"{seconds:.1f} s with start-up")
    if difference > BATCH_TOLERANCE * span:
        row.status, row.note = "FAIL", row.note + f"; differs from the engine by more than {BATCH_TOLERANCE:g} of the range"
    return row


def cuda_tests_row(device: torch.device, tests: Path) -> CheckRow:
    setting = f"pytest -m cuda {tests.name}"
    if device.type != "cuda":
        return CheckRow("cuda tests", setting, status="skip", note="needs a CUDA device")
    if not tests.is_dir():
        return CheckRow("cuda tests", setting, status="skip", note="no tests folder (not a source checkout)")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", str(tests)],
                          cwd=tests.parent, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(tests.parent)})
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return CheckRow("cuda tests", setting, status="PASS" if proc.returncode == 0 else "FAIL", note=summary[-150:])


def run_checks(device: str = "cuda", quick: bool = False, budget_s: float = 330.0,
               tests: Optional[Path] = None) -> list[CheckRow]:
    """Every check in order; ``quick`` shrinks each to a few seconds (the CPU dry run)."""
    from monai_tat.inference.devices import resolve_device

    target = resolve_device(device)
    deadline = time.monotonic() + budget_s
    on_gpu = target.type == "cuda"
    rows = [cuda_tests_row(target, tests or REPO / "tests")]
    if quick:
        rows += network_rows(target, [32], ["fp32", "bf16"], None, batch=1, repeats=1, quick=True, deadline=deadline)
        rows.append(oom_row(target, 64, 6))
        rows.append(large_ct_row(target, (32, 32, 2), None, None))
        rows.append(CheckRow("bundle inference", "tat_allinone inference.json", status="skip",
                             note="not in --quick (a subprocess of several seconds)"))
        return rows
    rows += network_rows(target, [128, 256, 512], ["fp32", "bf16", "fp16"], "bf16" if on_gpu else None,
                         batch=4 if on_gpu else 1, repeats=3 if on_gpu else 1, quick=False, deadline=deadline)
    rows.append(oom_row(target, 512, 24))
    rows.append(large_ct_row(target, (512, 512, 600), 8.0, None))
    rows.append(bundle_row(target, (256, 256, 8)))
    return rows


def format_table(rows: Sequence[CheckRow]) -> str:
    def number(value: Optional[float], spec: str) -> str:
        return format(value, spec) if value is not None else format("-", f">{spec.lstrip('+').split('.')[0]}")

    header = f"{'check':<17} {'setting':<52} {'slices/s':>9} {'peak MB':>9} {'max|diff|':>10} {'drift dB':>9} {'status':>6}  note"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.check:<17} {r.setting:<52} {number(r.slices_per_second, '9.2f')} {number(r.peak_memory_mb, '9.0f')} "
                     f"{number(r.max_abs_diff, '10.3g')} {number(r.drift_db, '+9.3f')} {r.status:>6}  {r.note}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks gpu-check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (a dry run, with --quick)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: every code path in seconds")
    parser.add_argument("--budget-s", type=float, default=330.0, help="network rows past this many seconds are skipped")
    parser.add_argument("--tests", type=Path, default=None, help="tests folder for the pytest -m cuda row")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    from monai_tat.errors import UserInputError

    try:
        rows = run_checks(args.device, args.quick, args.budget_s, args.tests)
    except UserInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    target = torch.device(args.device)
    name = torch.cuda.get_device_name(target) if target.type == "cuda" else "CPU"
    print(f"GPU check on {name} (torch {torch.__version__})")
    print(format_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
