"""How much could any linear filter gain on a denoising pair? Reference points for the network's gain.

For a pair ``(low_quality, reference)`` of a noise task (CT, PET) this scores, slice by slice in
the papers' PSNR convention:

- the input;
- the best isotropic in-plane Gaussian filter of the low-quality image (sigma chosen per volume
  from a grid, with the reference: an optimistic blind filter);
- the oracle Wiener filter: each slice filtered with the radially averaged gain
  ``S / (S + N)``, where ``S`` is the reference's and ``N`` the noise's (``low_quality - reference``)
  power spectrum averaged over the volume's slices. It knows both spectra, so no linear
  shift-invariant filter does better on average; a network can, by being nonlinear.

A network that gains less than these on a volume under-smooths it; a target far above the oracle
asks the network to beat the best linear filter by that margin. Command (held-out PET pairs of the
training cache)::

    python recipes/demo_weights/denoising_bounds.py CACHE/heldout/lq/pet_pyradiomics_brain2.nii.gz \\
        CACHE/heldout/hq/pet_pyradiomics_brain2.nii.gz --task pet [--restored restored.nii.gz]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from monai_tat.errors import UserInputError
from monai_tat.metrics.image_quality import mean_slice_psnr

__all__ = ["DenoisingBounds", "oracle_wiener", "best_gaussian", "denoising_bounds", "main"]

GAUSSIAN_SIGMAS_PX = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


@dataclass
class DenoisingBounds:
    """Mean slice PSNR (dB) of the input and of the reference filters; ``restored`` when given."""

    input_db: float
    gaussian_db: float
    gaussian_sigma_px: float
    wiener_db: float
    restored_db: Optional[float] = None


def _radial_index(height: int, width: int) -> np.ndarray:
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    return np.round(np.hypot(fy, fx) * max(height, width)).astype(int)


def oracle_wiener(low_quality: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``(H, W, K)`` low-quality slices filtered with the oracle radial Wiener gain (see the module doc)."""
    height, width, _ = reference.shape
    signal = np.fft.fft2(reference - reference.mean(axis=(0, 1)), axes=(0, 1))
    noise = np.fft.fft2(low_quality - reference, axes=(0, 1))
    radius = _radial_index(height, width).ravel()
    counts = np.bincount(radius)

    def radial_power(spectrum: np.ndarray) -> np.ndarray:
        power = np.mean(np.abs(spectrum) ** 2, axis=2).ravel()
        return np.bincount(radius, power) / counts

    s, n = radial_power(signal), radial_power(noise)
    gain = np.divide(s, s + n, out=np.ones_like(s), where=(s + n) > 0)[radius].reshape(height, width)
    gain[0, 0] = 1.0  # keep every slice's mean
    filtered = np.fft.ifft2(np.fft.fft2(low_quality, axes=(0, 1)) * gain[..., None], axes=(0, 1))
    return np.real(filtered)


def best_gaussian(low_quality: np.ndarray, reference: np.ndarray, task: str,
                  sigmas_px: Sequence[float] = GAUSSIAN_SIGMAS_PX) -> tuple[float, float]:
    """(mean slice PSNR, sigma in pixels) of the best in-plane Gaussian filter from ``sigmas_px``."""
    scores = [(mean_slice_psnr(ndimage.gaussian_filter(low_quality, (s, s, 0)), reference, task), s) for s in sigmas_px]
    return max(scores)


def denoising_bounds(low_quality: np.ndarray, reference: np.ndarray, task: str,
                     restored: Optional[np.ndarray] = None) -> DenoisingBounds:
    """Input, best Gaussian, oracle Wiener (and ``restored``) PSNR of ``(H, W, K)`` volumes (slices last)."""
    if task not in ("ct", "pet"):
        raise UserInputError(f"task {task!r} is not a denoising task; the bounds are for 'ct' and 'pet'.")
    arrays = [np.asarray(a, dtype=np.float64) for a in (low_quality, reference)]
    if arrays[0].shape != arrays[1].shape or arrays[0].ndim not in (2, 3):
        raise UserInputError(f"the low-quality {arrays[0].shape} and reference {arrays[1].shape} images must be "
                             "2D or 3D volumes of the same shape.")
    lq, ref = (a[..., None] if a.ndim == 2 else a for a in arrays)
    gaussian_db, sigma = best_gaussian(lq, ref, task)
    restored_db = None
    if restored is not None:
        out = np.asarray(restored, dtype=np.float64)
        restored_db = mean_slice_psnr(out[..., None] if out.ndim == 2 else out, ref, task)
    return DenoisingBounds(mean_slice_psnr(lq, ref, task), gaussian_db, sigma,
                           mean_slice_psnr(oracle_wiener(lq, ref), ref, task), restored_db)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python recipes/demo_weights/denoising_bounds.py", description=__doc__.split("\n")[0])
    parser.add_argument("low_quality")
    parser.add_argument("reference")
    parser.add_argument("--task", required=True, choices=("ct", "pet"))
    parser.add_argument("--restored", default=None, help="a restored volume to score beside the bounds")
    args = parser.parse_args(argv)
    from monai_tat.io import read_volume

    def load(path: str) -> np.ndarray:
        return read_volume(path).numpy()  # slices along the last axis, as the training cache writes them

    bounds = denoising_bounds(load(args.low_quality), load(args.reference), args.task,
                              None if args.restored is None else load(args.restored))
    print(f"input            {bounds.input_db:7.2f} dB")
    print(f"best Gaussian    {bounds.gaussian_db:7.2f} dB ({bounds.gaussian_db - bounds.input_db:+.2f}, "
          f"sigma {bounds.gaussian_sigma_px:g} px)")
    print(f"oracle Wiener    {bounds.wiener_db:7.2f} dB ({bounds.wiener_db - bounds.input_db:+.2f})")
    if bounds.restored_db is not None:
        print(f"restored         {bounds.restored_db:7.2f} dB ({bounds.restored_db - bounds.input_db:+.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
