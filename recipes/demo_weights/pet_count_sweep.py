"""How a network's PET gain follows the count level, beside the oracle linear filter's.

A held-out PET pair is scored at one count level only. This re-degrades its full-dose reference
(SUV, ``(I, J, K)``, slices last) at the nominal dose reduction factor for several count levels
(multiples of the package's level for the voxel size: :func:`pair_simulation.pet_counts`),
restores each low-count volume with :func:`monai_tat.inference.restore_volume` (the user's
default path) and prints, per level: the input PSNR, the oracle Wiener filter's gain
(:func:`denoising_bounds.oracle_wiener`, the best any linear filter does) and the network's,
mean slice PSNR in the papers' convention. A network whose gain stays flat while the Wiener gain
climbs with the noise does not smooth noisier maps enough: its training maps lack that noise.

Command (held-out maps of the training cache)::

    python recipes/demo_weights/pet_count_sweep.py CACHE/heldout/hq/pet_pyradiomics_brain2.nii.gz \\
        CACHE/heldout/hq/pet_pyradiomics_lung2.nii.gz --weights tat --scales 0.125 0.25 0.5 1
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from denoising_bounds import oracle_wiener
from pair_simulation import pet_counts
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.metrics.image_quality import mean_slice_psnr
from monai_tat.transforms import LowCountPET

__all__ = ["CountLevelScore", "sweep_counts", "main"]


@dataclass
class CountLevelScore:
    """One count level of a sweep: PSNR (dB) of the input, gains (dB) of the filters."""

    count_scale: float
    counts_per_suv_pixel: float
    input_db: float
    wiener_gain_db: float
    network_gain_db: float

    @property
    def over_linear_db(self) -> float:
        """The network's gain minus the oracle Wiener filter's."""
        return self.network_gain_db - self.wiener_gain_db


def sweep_counts(reference_suv: np.ndarray, affine: np.ndarray, network: nn.Module, scales: Sequence[float], *,
                 dose_reduction_factor: float = 12.0, seed: int = 1) -> list[CountLevelScore]:
    """Score ``network`` on ``reference_suv`` ``(I, J, K)`` degraded at each count scale (see the module doc)."""
    from monai_tat.inference import restore_volume

    reference = np.asarray(reference_suv, dtype=np.float32)
    if reference.ndim != 3 or min(reference.shape) < 1:
        raise UserInputError(f"the reference must be a 3D SUV volume (I, J, K), got shape {reference.shape}.")
    if any(not float(s) > 0 for s in scales):
        raise UserInputError(f"count scales must be positive, got {list(scales)}.")
    spacing = tuple(float(np.linalg.norm(affine[:3, a])) for a in range(3))
    nominal_counts = pet_counts(spacing, independent_slices=False)
    scores = []
    for scale in scales:
        counts = nominal_counts * float(scale)
        simulator = LowCountPET(dose_reduction_factor, counts, account_for_input_noise=True, seed=seed)
        low_count = np.asarray(simulator(reference[None]))[0].astype(np.float32)
        input_db = mean_slice_psnr(low_count, reference, "pet")
        wiener = oracle_wiener(low_count.astype(np.float64), reference.astype(np.float64))
        restored = restore_volume((low_count, affine), network, task="pet", device="cpu").numpy()
        scores.append(CountLevelScore(float(scale), counts, input_db,
                                      mean_slice_psnr(wiener, reference, "pet") - input_db,
                                      mean_slice_psnr(restored, reference, "pet") - input_db))
    return scores


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python recipes/demo_weights/pet_count_sweep.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("references", nargs="+", help="full-dose PET references (NIfTI, SUV, slices last)")
    parser.add_argument("--weights", default="tat", help="'tat', 'amir' or a weight file (default tat)")
    parser.add_argument("--scales", nargs="+", type=float, default=[0.125, 0.25, 0.5, 1.0],
                        help="count levels as multiples of the package's level (default 0.125 0.25 0.5 1)")
    parser.add_argument("--drf", type=float, default=12.0, help="dose reduction factor (default 12)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from monai_tat.inference import load_model
    from monai_tat.io import read_volume

    torch.set_num_threads(args.threads)
    network = load_model(args.weights)
    print("| map | count scale | counts / SUV pixel | input dB | oracle Wiener gain | network gain | network - Wiener |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for path in args.references:
        reference = read_volume(path)  # slices along the last axis, as the training cache writes them
        for s in sweep_counts(reference.numpy(), reference.affine.numpy(), network, args.scales,
                              dose_reduction_factor=args.drf):
            print(f"| {Path(path).name.split('.')[0]} | {s.count_scale:g} | {s.counts_per_suv_pixel:.0f} | "
                  f"{s.input_db:.2f} | {s.wiener_gain_db:+.2f} | {s.network_gain_db:+.2f} | {s.over_linear_db:+.2f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
