"""How a network's CT gain follows the input's noise, from low dose to an almost noise-free scan.

The held-out CT pair is scored at quarter dose only. A user may also hand the network a
routine-dose scan; a network trained on low-dose inputs alone smooths it as hard and removes real
detail, making it worse than its input. This sweep restores the demo CT phantoms
(:func:`monai_tat.demo.samples.make_sample`: a noise-free reference, quarter dose) at multiples of
the demo's fluence, each with :func:`monai_tat.inference.restore_volume` (the user's default path),
and prints per phantom and level the input PSNR and the network's gain over it (mean slice PSNR,
papers' convention). A fluence 4 times the demo's is about the noise of a routine-dose abdomen
scan at this phantom's size; 32 times is nearly noise-free.

Command::

    python recipes/demo_weights/ct_dose_sweep.py --weights tat --scales 1 4 8 16 32 --seeds 7 11 23
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.metrics.image_quality import mean_slice_psnr

__all__ = ["DoseLevelScore", "sweep_fluence", "main"]


@dataclass
class DoseLevelScore:
    """One phantom at one fluence: its seed, the fluence multiple, input PSNR and the network's gain (dB)."""

    seed: int
    fluence_scale: float
    input_db: float
    network_gain_db: float


def sweep_fluence(network: nn.Module, scales: Sequence[float], seeds: Sequence[int], *, size: int = 192,
                  slices: int = 3) -> list[DoseLevelScore]:
    """Score ``network`` on the demo CT phantom of each seed at each fluence multiple (see the module doc)."""
    from monai_tat.demo.samples import make_sample
    from monai_tat.inference import restore_volume

    if not scales or any(not float(s) > 0 for s in scales):
        raise UserInputError(f"fluence scales must be positive, got {list(scales)}.")
    scores = []
    for seed in seeds:
        for scale in scales:
            sample = make_sample("ct", size, slices, int(seed), ct_fluence_scale=float(scale))
            reference, low_dose = sample.reference.numpy(), sample.low_quality.numpy()
            restored = restore_volume(sample.low_quality, network, task="ct", device="cpu").numpy()
            input_db = mean_slice_psnr(low_dose, reference, "ct")
            scores.append(DoseLevelScore(int(seed), float(scale), input_db,
                                         mean_slice_psnr(restored, reference, "ct") - input_db))
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python recipes/demo_weights/ct_dose_sweep.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default="tat", help="'tat', 'amir' or a weight file (default tat)")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0, 4.0, 8.0, 16.0, 32.0],
                        help="fluence as multiples of the demo's (default 1 4 8 16 32)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[7, 11, 23], help="phantom seeds (default 7 11 23)")
    parser.add_argument("--size", type=int, default=192, help="phantom matrix (default 192)")
    parser.add_argument("--slices", type=int, default=3, help="slices per phantom (default 3)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from monai_tat.inference import load_model

    torch.set_num_threads(args.threads)
    network = load_model(args.weights)
    print("| phantom seed | fluence scale | input dB | network gain |")
    print("| ---: | ---: | ---: | ---: |")
    for s in sweep_fluence(network, args.scales, args.seeds, size=args.size, slices=args.slices):
        print(f"| {s.seed} | {s.fluence_scale:g} | {s.input_db:.2f} | {s.network_gain_db:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
