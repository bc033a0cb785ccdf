"""Where one forward pass spends its CPU time, operator by operator.

``python -m monai_tat.benchmarks cpu-profile --network paper-tat --size 512`` runs one warm-up pass
and one profiled pass (``torch.profiler``, float32 eager) and prints the operators by self CPU
time, their share of the pass, and the bound the split gives: matrix products and convolutions
already run in oneDNN / MKL kernels, which a compiler calls as they are, so removing every other
operator at most speeds the pass up by ``1 / kernel share``.

Example output columns: ``operator  calls  self s  share``; then ``kernel share`` and the bound.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

__all__ = ["OperatorTime", "profile_forward", "KERNEL_OPERATORS", "main"]

#: Convolutions and matrix products: each is one call into a library kernel (oneDNN, or im2col +
#: MKL GEMM for the small convolutions oneDNN leaves to ATen), which compiled code calls as it is.
KERNEL_OPERATORS = frozenset({
    "aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::_conv_depthwise2d",
    "aten::bmm", "aten::mm", "aten::addmm", "aten::baddbmm", "aten::matmul", "aten::linear",
})


@dataclass
class OperatorTime:
    """One operator's self CPU time over the profiled pass."""

    name: str
    calls: int
    self_seconds: float
    share: float  # of the summed self time of every operator


def profile_forward(network: torch.nn.Module, x: torch.Tensor) -> tuple[list[OperatorTime], float]:
    """Operators by self CPU time (largest first) of one forward pass, and the pass's wall seconds.

    Args:
        network: the network, in eval mode, on the CPU.
        x: its input, (B, C, H, W).
    """
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        network(x)  # warm-up: oneDNN primitives and allocator caches
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            network(x)
            wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total_us = sum(e.self_cpu_time_total for e in events) or 1.0
    rows = [OperatorTime(e.key, int(e.count), e.self_cpu_time_total / 1e6, e.self_cpu_time_total / total_us)
            for e in events]
    rows.sort(key=lambda row: row.self_seconds, reverse=True)
    return rows, wall


def kernel_share(rows: Sequence[OperatorTime]) -> float:
    """The share of the pass spent in :data:`KERNEL_OPERATORS`."""
    return sum(row.share for row in rows if row.name in KERNEL_OPERATORS)


def main(argv: Sequence[str] | None = None) -> int:
    from monai_tat.benchmarks.cpu_levers import network_by_name

    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks cpu-profile", description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="paper-tat", help="paper-tat, paper-amir, tat, amir")
    parser.add_argument("--size", type=int, nargs="+", default=[512], metavar="N", help="N (square) or H W")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--top", type=int, default=15, help="operators printed")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error("--size takes N or H W")
    height, width = (args.size * 2)[:2]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = network_by_name(args.network).eval()
    rows, wall = profile_forward(network, torch.rand(1, 1, height, width))
    share = kernel_share(rows)
    print(f"# {args.network} {height}x{width}, fp32 eager, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, load {os.getloadavg()[0]:.1f}; profiled pass {wall:.2f} s")
    print(f"{'operator':32s} {'calls':>7s} {'self s':>8s} {'share':>7s}")
    for row in rows[: args.top]:
        mark = " *" if row.name in KERNEL_OPERATORS else ""
        print(f"{row.name:32s} {row.calls:7d} {row.self_seconds:8.3f} {100 * row.share:6.1f}%{mark}")
    bound: Optional[float] = 1.0 / share if share > 0 else None
    print(f"kernel share (*): {100 * share:.1f}%; removing everything else at most speeds the pass up "
          f"{bound:.2f}x" if bound else "kernel share: 0")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "network": args.network, "size": [height, width], "threads": args.threads,
            "wall_seconds": wall, "kernel_share": share, "bound": bound,
            "operators": [asdict(row) for row in rows]}, indent=1), encoding="utf-8")
    return 0
