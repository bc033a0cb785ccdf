"""Seconds per slice of the paper-size TAT and AMIR networks, against the reference implementations.

One slice, float32, eval mode, ``torch.inference_mode``; the median of ``--repeats`` runs after one
warm-up. The reference figures were measured on the project's 2-core CPU with 2 threads (issue 2);
compare with ``--threads 2`` on that machine. Weights are random: speed does not depend on them.

Usage::

    python -m monai_tat.benchmarks.networks_speed                          # CPU, 2 threads, 128/256/512
    python -m monai_tat.benchmarks.networks_speed --sizes 512 --device cuda --precision fp32 bf16
    python -m monai_tat.benchmarks.networks_speed --device cuda --compile   # torch.compile as well
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn

from monai_tat.networks import AMIR, TAT

__all__ = ["REFERENCE_SECONDS", "time_network", "main"]

#: Reference implementation, 2 threads on the project's CPU, float32, one slice, median of 3 (issue 2).
REFERENCE_SECONDS = {
    ("TAT", 128): 1.50,
    ("TAT", 256): 10.7,
    ("TAT", 512): 48.5,
    ("AMIR", 128): 0.97,
    ("AMIR", 256): 5.6,
    ("AMIR", 512): 29.4,
}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_network(
    network: nn.Module, size: int, device: torch.device, precision: str = "fp32", repeats: int = 3, batch: int = 1
) -> float:
    """Median seconds for one forward pass of a ``(batch, 1, size, size)`` input."""
    x = torch.rand(batch, 1, size, size, device=device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        if precision in ("bf16", "fp16")
        else nullcontext()
    )
    times = []
    with torch.inference_mode(), autocast:
        network(x)  # warm-up (and compilation)
        _synchronize(device)
        for _ in range(repeats):
            start = time.perf_counter()
            network(x)
            _synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["TAT", "AMIR"], choices=["TAT", "AMIR"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the reference figures used 2)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(network)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1, help="slices per forward pass (GPU throughput)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
          f"{args.threads} threads, batch {args.batch}")  # fmt: skip
    print(f"{'model':<5} {'size':>5} {'mode':<13} {'s/slice':>8} {'slices/s':>9} {'reference s':>12} {'speed-up':>9}")
    for name in args.models:
        network = (TAT() if name == "TAT" else AMIR()).eval().to(device)
        variants = [(p, network) for p in args.precision]
        if args.compile:
            variants += [(f"{p}+compile", torch.compile(network)) for p in args.precision]
        for size in args.sizes:
            for mode, model in variants:
                seconds = time_network(model, size, device, mode.split("+")[0], args.repeats, args.batch) / args.batch
                reference = REFERENCE_SECONDS.get((name, size)) if device.type == "cpu" and mode == "fp32" else None
                ref_text = f"{reference:12.2f} {reference / seconds:8.2f}x" if reference else f"{'-':>12} {'-':>9}"
                print(f"{name:<5} {size:>5} {mode:<13} {seconds:8.3f} {1 / seconds:9.2f} {ref_text}", flush=True)


if __name__ == "__main__":
    main()
