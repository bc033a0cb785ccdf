"""Seconds per volume of whole-volume restoration with TAT and AMIR through the engine.

The paper-size, the shipped demo or tiny TAT / AMIR (random weights: speed does not depend on
them) restore a synthetic CT-like volume with :func:`monai_tat.inference.restore_volume`.

Usage::

    python -m monai_tat.benchmarks models --device cuda --amp bf16 --batch-size 8
    python -m monai_tat.benchmarks models --size 64 64 2 --tiny        # a smoke run
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.benchmarks.measuring import device_text, synchronize
from monai_tat.benchmarks.volumes import ct_like_volume

__all__ = ["TINY", "build", "time_restoration", "main"]

TINY = {"TAT": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1),
        "AMIR": dict(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)}


def build(name: str, tiny: bool = False, demo: bool = False) -> nn.Module:
    """The paper-size network ``name`` (TAT or AMIR), the shipped demo model, or a tiny one for smoke
    runs, in eval mode."""
    if demo:
        from monai_tat.inference import load_model

        return load_model(name.lower())
    from monai_tat.networks import build_network

    return build_network(name, **(TINY[name] if tiny else {})).eval()


def time_restoration(volume: MetaTensor, network: nn.Module, device: torch.device, batch_size: int | None,
                     amp: str | None, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` full restorations, after one warm-up restoration of two slices."""
    from monai_tat.inference import restore_volume

    restore_volume(volume[..., :2], network, "ct", device=device, batch_size=batch_size, amp=amp)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        restore_volume(volume, network, "ct", device=device, batch_size=batch_size, amp=amp)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_tat.benchmarks models``: seconds per volume with TAT and AMIR."""
    from monai_tat.inference import resolve_device

    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks models",
                                     description="Seconds per volume of whole-volume restoration with TAT and AMIR.")
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 64), metavar=("I", "J", "K"))
    parser.add_argument("--models", nargs="+", default=("TAT", "AMIR"), choices=("TAT", "AMIR"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the engine's (on CUDA: from free memory)")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="tiny networks (smoke test of the script)")
    parser.add_argument("--demo", action="store_true", help="the shipped demo models instead of the paper sizes")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    volume = ct_like_volume(args.size)
    batch = args.batch_size if args.batch_size else "auto"
    print(f"volume {tuple(args.size)} (axial K={args.size[2]} slices), device {device} ({device_text(device)}), "
          f"batch {batch}, amp {args.amp}, torch {torch.__version__}")
    for name in args.models:
        network = build(name, tiny=args.tiny, demo=args.demo)
        times = time_restoration(volume, network, device, args.batch_size, args.amp, args.repeats)
        best = min(times)
        label = "(tiny)" if args.tiny else "(demo)" if args.demo else "(paper)"
        print(f"{name:5s} {label:7s} {best:10.2f} s/volume  {args.size[2] / best:8.2f} slices/s"
              f"  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
