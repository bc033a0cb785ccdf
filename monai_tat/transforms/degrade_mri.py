"""MRI degradation: k-space truncation (the papers' 4x super-resolution input)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from monai_tat.errors import UserInputError
from monai_tat.transforms._slicewise import apply_slicewise

__all__ = ["KSpaceTruncation", "KSpaceTruncationd", "kspace_window"]


def kspace_window(n: int, factor: float) -> slice:
    """Indices of the kept central band of a centred (``fftshift``-ed) k-space axis of length ``n``.

    Keeps ``max(1, round(n / factor))`` samples around DC (index ``n // 2`` after fftshift), so a
    256-sample axis at factor 4 keeps frequencies -32..31.
    """
    keep = max(1, int(round(n / factor)))
    start = n // 2 - keep // 2
    return slice(start, start + keep)


def truncate_kspace(slice2d: np.ndarray, factor: float, magnitude: bool = True) -> np.ndarray:
    """Keep the central 1/``factor`` of k-space along both axes of one ``(H, W)`` slice, zero-fill.

    Returns the magnitude image (``magnitude=True``) or the complex zero-filled image, same size.
    """
    kspace = np.fft.fftshift(np.fft.fft2(slice2d))
    kept = np.zeros_like(kspace)
    rows, cols = kspace_window(kspace.shape[0], factor), kspace_window(kspace.shape[1], factor)
    kept[rows, cols] = kspace[rows, cols]
    image = np.fft.ifft2(np.fft.ifftshift(kept))
    return np.abs(image) if magnitude else image


class KSpaceTruncation(Transform):
    """Low-resolution MRI from a high-resolution magnitude image by k-space truncation.

    Each in-plane slice is Fourier transformed, only the central ``1/factor`` of k-space along each
    in-plane axis is kept (factor 4 keeps 6.25 % of the samples, FACTS.md: IXI T2 preparation),
    the rest is zero-filled and the inverse transform taken: same matrix size, lower resolution
    with Gibbs ringing, as in the papers' 4x super-resolution task. Deterministic (no noise).

    Args:
        factor: acceleration per in-plane axis (> 1 removes information; 1 keeps everything).
        magnitude: return the magnitude image (default, what MRI scanners export and the papers
            use). ``False`` returns the complex zero-filled image, which has exactly no energy
            outside the kept window (the magnitude operation itself adds a little).

    Input: ``(H, W)``, ``(C, H, W)`` or ``(C, H, W, D)`` (slices along the last axis); output the
    same shape and container, float32 (complex64 when ``magnitude=False``).
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(self, factor: float = 4.0, magnitude: bool = True) -> None:
        if not factor >= 1.0:
            raise UserInputError(f"KSpaceTruncation: factor must be >= 1, got {factor}.")
        self.factor = float(factor)
        self.magnitude = bool(magnitude)

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        return apply_slicewise(
            img,
            lambda s: truncate_kspace(s, self.factor, self.magnitude),
            type(self).__name__,
            complex_output=not self.magnitude,
        )


class KSpaceTruncationd(MapTransform):
    """Dictionary version of :class:`KSpaceTruncation` (same arguments after ``keys``)."""

    backend = KSpaceTruncation.backend

    def __init__(
        self, keys: KeysCollection, factor: float = 4.0, magnitude: bool = True, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.simulator = KSpaceTruncation(factor, magnitude)

    def __call__(self, data: Mapping[Hashable, np.ndarray | torch.Tensor]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.simulator(d[key])
        return d
