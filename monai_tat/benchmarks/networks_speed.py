"""Seconds per slice of the paper-size TAT and AMIR networks, against the reference implementations.

One slice, float32, eval mode, ``torch.inference_mode``; the median of ``--repeats`` runs after one
warm-up. The reference figures were measured on the project's 2-core CPU with 2 threads (issue 2);
compare with ``--threads 2`` on that machine. Weights are random: speed does not depend on them.
``--demo`` times the shipped demo weights instead; ``--onnx`` also exports each network at each
size and times ONNX Runtime (CPU, same threads), printing the file size and the largest difference
from eager PyTorch.

Usage::

    python -m monai_tat.benchmarks.networks_speed                          # CPU, 2 threads, 128/256/512
    python -m monai_tat.benchmarks.networks_speed --sizes 512 --device cuda --precision fp32 bf16
    python -m monai_tat.benchmarks.networks_speed --device cuda --compile   # torch.compile as well
    python -m monai_tat.benchmarks.networks_speed --demo --models TAT --sizes 512 --onnx torchscript dynamo
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from monai_tat.networks import AMIR, TAT

__all__ = ["REFERENCE_SECONDS", "time_network", "time_onnx", "main"]

#: Reference implementation, 2 threads on the project's CPU, float32, one slice, median of 3 (issue 2).
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
    parser.add_argument("--demo", action="store_true", help="time the shipped demo weights, not paper-size networks")
    parser.add_argument(
        "--onnx", nargs="*", default=[], choices=["torchscript", "dynamo"],
        help="also export with these ONNX exporters and time ONNX Runtime (CPU, batch 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, device {device}, "
          f"{args.threads} threads, batch {args.batch}")  # fmt: skip
    print(f"{'model':<5} {'size':>5} {'mode':<13} {'s/slice':>8} {'slices/s':>9} {'reference s':>12} {'speed-up':>9}")
    for name, network in _networks(args.models, args.demo).items():
        network = network.eval().to(device)
        variants = [(p, network) for p in args.precision]
        if args.compile:
            variants += [(f"{p}+compile", torch.compile(network)) for p in args.precision]
        weight_bytes = sum(t.numel() * t.element_size() for t in network.state_dict().values())
        for size in args.sizes:
            for mode, model in variants:
                seconds = time_network(model, size, device, mode.split("+")[0], args.repeats, args.batch) / args.batch
                compared = device.type == "cpu" and mode == "fp32" and not args.demo
                reference = REFERENCE_SECONDS.get((name, size)) if compared else None
                ref_text = f"{reference:12.2f} {reference / seconds:8.2f}x" if reference else f"{'-':>12} {'-':>9}"
                print(f"{name:<5} {size:>5} {mode:<13} {seconds:8.3f} {1 / seconds:9.2f} {ref_text}", flush=True)
            for exporter in args.onnx:
                seconds, file_bytes, difference = time_onnx(network.cpu(), size, exporter, args.threads, args.repeats)
                print(f"{name:<5} {size:>5} {ONNX_LABELS[exporter]:<13} {seconds:8.3f} {1 / seconds:9.2f} "
                      f"{'-':>12} {'-':>9}  file {file_bytes / 1e6:.1f} MB (weights {weight_bytes / 1e6:.1f} MB), "
                      f"max |ORT - eager| {difference:.1e}", flush=True)  # fmt: skip
                network.to(device)


if __name__ == "__main__":
    main()
