"""Slices per second of TAT and AMIR per slice size and execution mode, against the reference implementations.

Modes: ``fp32`` (eager PyTorch, the baseline), ``bf16`` / ``fp16`` (autocast), ``<precision>+compile``
(``torch.compile``; its first call, the compilation, is reported apart), ``script``
(``torch.jit.script``, what the bundles' export gives; three warm-up calls, as its profiling
executor optimises at the second), ``onnx-ts`` / ``onnx-dynamo`` (ONNX Runtime on
the CPU, with the file size). Each row: median seconds per slice over ``--repeats`` runs after one
warm-up, slices/s, peak memory above the start of the run (CUDA: allocated bytes; CPU: the
process's peak resident size, see :class:`~monai_tat.benchmarks.measuring.PeakMemory`), the
largest |difference| from the fp32 eager output on the same input, and the speed-up over the
reference implementation where one was measured. ``--json`` writes the rows.

Eval mode, ``torch.inference_mode``. The reference figures were measured on the project's 2-core
CPU with 2 threads, in another run; compare with ``--threads 2`` on that machine. Weights are random
(speed does not depend on them) unless ``--demo`` times the shipped demo weights.

Usage::

    python -m monai_tat.benchmarks.networks_speed                          # CPU, 2 threads, 128/256/512
    python -m monai_tat.benchmarks.networks_speed --sizes 512 --device cuda --precision fp32 bf16
    python -m monai_tat.benchmarks.networks_speed --device cuda --compile   # torch.compile as well
    python -m monai_tat.benchmarks.networks_speed --demo --models TAT --sizes 512 --onnx torchscript dynamo
    python -m monai_tat.benchmarks networks --sizes 512 --script --json networks.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from typing import Optional
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from monai_tat.networks import AMIR, TAT

__all__ = ["REFERENCE_SECONDS", "ModeResult", "time_network", "time_onnx", "measure_mode", "main"]

#: Reference implementation, 2 threads on the project's CPU, float32, one slice, median of 3.
REFERENCE_SECONDS = {
    ("TAT", 128): 1.50,
    ("TAT", 256): 10.7,
    ("TAT", 512): 48.5,
    ("AMIR", 128): 0.97,
    ("AMIR", 256): 5.6,
    ("AMIR", 512): 29.4,
}


#: Row labels of the ONNX Runtime timings, per exporter.
ONNX_LABELS = {"torchscript": "onnx-ts", "dynamo": "onnx-dynamo"}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision in ("bf16", "fp16"):
        return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return nullcontext()


def time_network(
    network: nn.Module, size: int, device: torch.device, precision: str = "fp32", repeats: int = 3, batch: int = 1
) -> float:
    """Median seconds for one forward pass of a ``(batch, 1, size, size)`` input."""
    x = torch.rand(batch, 1, size, size, device=device)
    times = []
    with torch.inference_mode(), _autocast(device, precision):
        network(x)  # warm-up (and compilation)
        _synchronize(device)
        for _ in range(repeats):
            start = time.perf_counter()
            network(x)
            _synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class ModeResult:
    """One row of the table: a network at one slice size in one execution mode."""

    model: str
    size: int
    mode: str
    device: str
    batch: int
    seconds_per_slice: float
    slices_per_second: float
    first_call_seconds: Optional[float]  # the warm-up calls; for compiled modes, mostly compilation
    peak_memory_bytes: Optional[int]
    max_abs_diff_vs_fp32_eager: Optional[float]
    reference_seconds: Optional[float] = None
    speedup_vs_reference: Optional[float] = None
    file_bytes: Optional[int] = None


def _peak_memory(device: torch.device):
    """Context measuring peak bytes above its start: CUDA allocator, or the process's resident size."""
    if device.type == "cuda":

        class _Cuda:
            extra_bytes: Optional[int] = None

            def __enter__(self):
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                self._start = torch.cuda.memory_allocated(device)
                return self

            def __exit__(self, *exc: object) -> None:
                torch.cuda.synchronize(device)
                self.extra_bytes = torch.cuda.max_memory_allocated(device) - self._start

        return _Cuda()
    from monai_tat.benchmarks.measuring import PeakMemory

    return PeakMemory()


def measure_mode(
    model: nn.Module, x: torch.Tensor, precision: str, repeats: int, expected: Optional[torch.Tensor],
    warmups: int = 1,
) -> tuple[float, float, Optional[int], Optional[float], torch.Tensor]:
    """``model`` on ``x``: (median seconds per call, seconds of the ``warmups`` first calls, peak
    bytes over the timed calls, max |output - expected|, output). TorchScript's profiling executor
    optimises a scripted model at its second call: give it ``warmups=3``."""
    device = x.device
    times = []
    with torch.inference_mode(), _autocast(device, precision):
        start = time.perf_counter()
        for _ in range(max(1, warmups)):
            out = model(x)
        _synchronize(device)
        first = time.perf_counter() - start
        with _peak_memory(device) as peak:
            for _ in range(repeats):
                start = time.perf_counter()
                out = model(x)
                _synchronize(device)
                times.append(time.perf_counter() - start)
    out = out.float()
    difference = None if expected is None else float((out - expected).abs().max())
    return statistics.median(times), first, peak.extra_bytes, difference, out


def time_onnx(network: nn.Module, size: int, exporter: str, threads: int, repeats: int = 3) -> tuple[float, int, float]:
    """Export ``network`` (CPU, float32) at ``size`` x ``size`` with ``exporter`` ("torchscript" or
    "dynamo"), run it in ONNX Runtime with ``threads`` threads; returns (median seconds per forward,
    file bytes, max |ONNX Runtime - eager|)."""
    import onnxruntime

    x = torch.rand(1, 1, size, size)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "network.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(network, (x,), str(path), dynamo=exporter == "dynamo")
        file_bytes = sum(f.stat().st_size for f in Path(folder).iterdir())  # with any external data
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    onnx_out = session.run(None, feed)[0]  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    with torch.inference_mode():
        difference = float((torch.from_numpy(onnx_out) - network(x)).abs().max())
    return statistics.median(times), file_bytes, difference


def _networks(names: Sequence[str], demo: bool) -> dict[str, nn.Module]:
    if demo:
        from monai_tat.inference import load_model

        return {name: load_model(name.lower()) for name in names}
    return {name: (TAT() if name == "TAT" else AMIR()) for name in names}


def _variants(network: nn.Module, args: argparse.Namespace) -> list[tuple[str, str, nn.Module]]:
    """(mode label, autocast precision, callable) per requested mode; fp32 eager first (the baseline)."""
    variants = [(p, p, network) for p in ["fp32", *[p for p in args.precision if p != "fp32"]]]
    if args.compile:
        compiled = torch.compile(network)
        variants += [(f"{p}+compile", p, compiled) for p in ["fp32", *[p for p in args.precision if p != "fp32"]]]
    if args.script:
        variants.append(("script", "fp32", torch.jit.script(network)))
    return variants


def _print_row(row: ModeResult) -> None:
    memory = "-" if row.peak_memory_bytes is None else f"{row.peak_memory_bytes / 2**20:.0f}"
    diff = "-" if row.max_abs_diff_vs_fp32_eager is None else f"{row.max_abs_diff_vs_fp32_eager:.1e}"
    ref = f"{row.reference_seconds:8.2f} {row.speedup_vs_reference:7.2f}x" if row.reference_seconds else f"{'-':>8} {'-':>8}"
    extra = f"  file {row.file_bytes / 1e6:.1f} MB" if row.file_bytes else ""
    first = "-" if row.first_call_seconds is None else f"{row.first_call_seconds:.2f}"
    print(f"{row.model:<5} {row.size:>5} {row.mode:<13} {row.seconds_per_slice:8.3f} {row.slices_per_second:9.2f} "
          f"{first:>8} {memory:>8} {diff:>9} {ref}{extra}", flush=True)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[ModeResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["TAT", "AMIR"], choices=["TAT", "AMIR"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the reference figures used 2)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                        help="autocast precisions besides fp32 eager, which always runs (the baseline)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(network) per precision")
    parser.add_argument("--script", action="store_true", help="also time torch.jit.script(network)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, help="slices per forward pass (GPU throughput)")
    parser.add_argument("--demo", action="store_true", help="time the shipped demo weights, not paper-size networks")
    parser.add_argument(
        "--onnx", nargs="*", default=[], choices=["torchscript", "dynamo"],
        help="also export with these ONNX exporters and time ONNX Runtime (CPU, batch 1)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, metavar="PATH", help="write the rows (and the machine) as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    machine = {"processor": platform.processor() or platform.machine(), "torch": torch.__version__,
               "device": str(device), "threads": args.threads, "batch": args.batch, "demo_weights": args.demo}
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
    print(f"# {machine['processor']}, torch {torch.__version__}, device {device}, {args.threads} threads, batch {args.batch}")
    print(f"{'model':<5} {'size':>5} {'mode':<13} {'s/slice':>8} {'slices/s':>9} {'first s':>8} {'peak MiB':>8} "
          f"{'max|diff|':>9} {'ref s':>8} {'speed-up':>8}")  # fmt: skip
    rows: list[ModeResult] = []
    for name, network in _networks(args.models, args.demo).items():
        network = network.eval().to(device)
        variants = _variants(network, args)
        for size in args.sizes:
            x = torch.rand(args.batch, 1, size, size, device=device)
            expected: Optional[torch.Tensor] = None
            for mode, precision, model in variants:
                warmups = 3 if mode == "script" else 1
                seconds, first, peak, difference, out = measure_mode(model, x, precision, args.repeats, expected, warmups)
                if expected is None:
                    expected = out  # fp32 eager
                reference = REFERENCE_SECONDS.get((name, size)) if device.type == "cpu" and not args.demo else None
                per_slice = seconds / args.batch
                row = ModeResult(name, size, mode, str(device), args.batch, per_slice, 1 / per_slice, first, peak,
                                 difference, reference, reference / per_slice if reference else None)
                rows.append(row)
                _print_row(row)
            for exporter in args.onnx:
                seconds, file_bytes, difference = time_onnx(network.cpu(), size, exporter, args.threads, args.repeats)
                row = ModeResult(name, size, ONNX_LABELS[exporter], "cpu", 1, seconds, 1 / seconds, None, None,
                                 difference, file_bytes=file_bytes)
                rows.append(row)
                _print_row(row)
                network.to(device)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
        print(f"# wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
