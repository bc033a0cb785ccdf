"""Seconds per volume of whole-volume restoration with TAT and AMIR (paper sizes, random weights).

Runs :func:`monai_tat.inference.restore_volume` on a synthetic CT-like volume (default
512 x 512 x 64 voxels in HU) exactly as the CLI does, so slicing, normalisation, batching and the
inverse are all counted. Weights are random: speed does not depend on their values.

Usage::

    python -m monai_tat.benchmarks.volume_speed                       # CPU or the GPU, both models
    python -m monai_tat.benchmarks.volume_speed --device cuda --amp bf16 --batch-size 8
    python -m monai_tat.benchmarks.volume_speed --demo                # the shipped demo models
    python -m monai_tat.benchmarks.volume_speed --size 64 64 2 --tiny   # a smoke run
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn

__all__ = ["ct_like_volume", "build", "time_restoration", "main"]

TINY = {"TAT": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1),
        "AMIR": dict(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)}


def ct_like_volume(shape: Sequence[int], seed: int = 0) -> MetaTensor:
    """An ellipse of soft tissue with a bone ring in air, plus quarter-dose-like noise, in HU.

    Shape ``(I, J, K)``; spacing 0.7 x 0.7 x 2.5 mm; K is the axial axis.
    """
    rng = np.random.default_rng(seed)
    i, j, k = shape
    xx, yy = np.meshgrid(np.linspace(-1, 1, i), np.linspace(-1, 1, j), indexing="ij")  # (I, J)
    r = (xx / 0.85) ** 2 + (yy / 0.65) ** 2
    plane = np.where(r < 1.0, 40.0, -1000.0) + np.where((r > 0.8) & (r < 0.9), 700.0, 0.0)
    volume = np.repeat(plane[:, :, None], k, axis=2)
    volume = volume + rng.normal(0.0, 25.0, volume.shape)
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(volume.astype(np.float32)), affine=affine, meta={"modality": "CT"})


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

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    restore_volume(volume[..., :2], network, "ct", device=device, batch_size=batch_size, amp=amp)
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        restore_volume(volume, network, "ct", device=device, batch_size=batch_size, amp=amp)
        sync()
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    from monai_tat.inference import resolve_device
    from monai_tat.inference.devices import default_batch_size

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 64), metavar=("I", "J", "K"))
    parser.add_argument("--models", nargs="+", default=("TAT", "AMIR"), choices=("TAT", "AMIR"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="tiny networks (smoke test of the script)")
    parser.add_argument("--demo", action="store_true", help="the shipped demo models instead of the paper sizes")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    batch = args.batch_size or default_batch_size(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads"
    volume = ct_like_volume(args.size)
    print(f"volume {tuple(args.size)} (axial K={args.size[2]} slices), device {device} ({where}), batch {batch}, "
          f"amp {args.amp}, torch {torch.__version__}")
    for name in args.models:
        network = build(name, tiny=args.tiny, demo=args.demo)
        times = time_restoration(volume, network, device, batch, args.amp, args.repeats)
        best = min(times)
        label = "(tiny)" if args.tiny else "(demo)" if args.demo else "(paper)"
        print(f"{name:5s} {label:7s} {best:10.2f} s/volume  {args.size[2] / best:8.2f} slices/s"
              f"  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
