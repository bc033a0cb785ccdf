"""PET degradation: low-count (reduced-dose) simulation from a full-dose SUV image.

Physics per slice (2D parallel-beam sinogram, true coincidences only):

1. Expected full-dose counts ``ybar = (c / V) * A G x`` with ``x`` the SUV image (negative values
   set to 0), ``G`` an optional Gaussian resolution model (``psf_fwhm_pixels``), ``A`` the Radon
   transform over ``V = num_views`` angles, and ``c = counts_per_suv_pixel`` the expected full-dose
   counts one pixel of SUV 1 contributes over all views.
2. Full-dose data ``y ~ Poisson(ybar)``, then binomial thinning by the dose reduction factor ``r``:
   every count is kept with probability ``1 / r``. This is exactly what decimating list-mode data
   does (the papers' low-dose PET: DRF 12), and the result is Poisson with mean ``ybar / r``.
3. OSEM reconstruction (``iterations`` x ``subsets``; subsets 1 is MLEM) with the system model
   ``(c / (r V)) A G``, which gives SUV directly; optional Gaussian post-filter.

Not modelled: attenuation, scatter, randoms, normalisation, detector geometry; the count level is
a single number. The default ``c = 200`` gives about 1e6 true counts for a body slice of ~5000
pixels at mean SUV 1 (4 mm pixels), the order of a clinical whole-body 18F-FDG bed position per
slice; full-dose noise in the reconstruction is then of the order of clinical images, and the
reduced-dose noise grows as sqrt(r). Everything outside the slice (padded to its circumscribing
square) is reconstructed, so no activity is cut at the corners.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import Transform
from monai.utils import TransformBackends
from scipy.ndimage import gaussian_filter
from skimage.transform import iradon, radon

from monai_tat.errors import UserInputError
from monai_tat.transforms._radon import angles, crop_from_square, inscribed_circle, pad_to_square
from monai_tat.transforms._random import RandomSimulatorDict, SeededNoise
from monai_tat.transforms._slicewise import apply_slicewise

__all__ = ["LowCountPET", "LowCountPETd"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


class LowCountPET(SeededNoise, Transform):
    """Simulate a reduced-dose (low-count) PET reconstruction from a full-dose SUV image.

    Args:
        dose_reduction_factor: full dose / simulated dose (>= 1); 12 as in the papers.
        counts_per_suv_pixel: expected full-dose true counts from one pixel of SUV 1 (all views).
        num_views: sinogram angles over 180 degrees.
        iterations: OSEM iterations.
        subsets: OSEM subsets (divides the views; 1 gives MLEM).
        psf_fwhm_pixels: FWHM of the Gaussian resolution model (used in the data model and the
            reconstruction), in pixels; 0 switches it off.
        postfilter_fwhm_pixels: FWHM of a Gaussian post-filter of the reconstruction; 0 = none.
        seed: seed of the transform's random state (``set_random_state`` also works).

    Input: SUV, ``(H, W)``, ``(C, H, W)`` or ``(C, H, W, D)`` (slices along the last axis).
    Output: SUV, same shape and container, float32, non-negative.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        dose_reduction_factor: float = 12.0,
        counts_per_suv_pixel: float = 200.0,
        num_views: int = 180,
        iterations: int = 3,
        subsets: int = 6,
        psf_fwhm_pixels: float = 0.0,
        postfilter_fwhm_pixels: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not dose_reduction_factor >= 1.0:
            raise UserInputError(f"LowCountPET: dose_reduction_factor must be >= 1, got {dose_reduction_factor}.")
        if not counts_per_suv_pixel > 0:
            raise UserInputError(f"LowCountPET: counts_per_suv_pixel must be > 0, got {counts_per_suv_pixel}.")
        if int(iterations) < 1 or int(subsets) < 1 or int(num_views) < int(subsets):
            raise UserInputError("LowCountPET: need iterations >= 1 and 1 <= subsets <= num_views.")
        if psf_fwhm_pixels < 0 or postfilter_fwhm_pixels < 0:
            raise UserInputError("LowCountPET: psf_fwhm_pixels and postfilter_fwhm_pixels must be >= 0.")
        self.dose_reduction_factor = float(dose_reduction_factor)
        self.counts_per_suv_pixel = float(counts_per_suv_pixel)
        self.num_views = int(num_views)
        self.iterations = int(iterations)
        self.subsets = int(subsets)
        self.psf_fwhm_pixels = float(psf_fwhm_pixels)
        self.postfilter_fwhm_pixels = float(postfilter_fwhm_pixels)
        self._seed = 0
        self._sensitivity: dict[int, list[np.ndarray]] = {}
        if seed is not None:
            self.set_random_state(seed)

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> np.ndarray | torch.Tensor:
        rng = self.noise_generator(randomize)
        return apply_slicewise(img, lambda s: self._slice(s, rng), type(self).__name__)

    # -- physics ---------------------------------------------------------------------------------

    def _blur(self, image: np.ndarray, fwhm: float) -> np.ndarray:
        return gaussian_filter(image, fwhm * _FWHM_TO_SIGMA, mode="constant") if fwhm > 0 else image

    def _subset_angles(self) -> list[np.ndarray]:
        theta = angles(self.num_views)
        return [theta[k :: self.subsets] for k in range(self.subsets)]

    def _project(self, image: np.ndarray, theta: np.ndarray, fov: np.ndarray) -> np.ndarray:
        """Radon transform of the PSF-blurred image (blur spilling out of the field of view dropped)."""
        blurred = self._blur(image, self.psf_fwhm_pixels)
        return radon(np.where(fov, blurred, 0.0), theta=theta, circle=True)

    def _backproject(self, sinogram: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Unfiltered back-projection (adjoint of radon up to a constant), then the PSF (symmetric)."""
        return self._blur(iradon(sinogram, theta=theta, circle=True, filter_name=None), self.psf_fwhm_pixels)

    def _sensitivities(self, size: int, scale: float) -> list[np.ndarray]:
        """Per-subset sensitivity images ``scale * G A_k^T 1`` (cached per slice size)."""
        if size not in self._sensitivity:
            self._sensitivity[size] = [
                self._backproject(np.ones((size, len(theta))), theta) for theta in self._subset_angles()
            ]
        return [scale * s for s in self._sensitivity[size]]

    def _slice(self, suv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        size = int(math.ceil(math.hypot(*suv.shape))) + 2  # circumscribing square: nothing is cut
        activity = pad_to_square(np.clip(suv, 0.0, None), size)
        fov = inscribed_circle(size)
        counts_per_line = self.counts_per_suv_pixel / self.num_views
        expected = counts_per_line * np.clip(self._project(activity, angles(self.num_views), fov), 0.0, None)
        full = rng.poisson(expected)
        low = rng.binomial(full, 1.0 / self.dose_reduction_factor).astype(np.float64)
        scale = counts_per_line / self.dose_reduction_factor  # system model: counts per SUV line integral
        recon = self._osem(low, scale, size)
        recon = self._blur(recon, self.postfilter_fwhm_pixels)
        return crop_from_square(recon, suv.shape)

    def _osem(self, sinogram: np.ndarray, scale: float, size: int) -> np.ndarray:
        fov = inscribed_circle(size)
        sens = self._sensitivities(size, scale)
        total = sinogram.sum()
        # uniform start with the right total activity: sum over views of A x equals V * sum(x)
        start = total / (scale * self.num_views * fov.sum()) if total > 0 else 0.0
        x = np.where(fov, max(start, 1e-12), 0.0)
        subsets = self._subset_angles()
        for _ in range(self.iterations):
            for k, theta in enumerate(subsets):
                data = sinogram[:, k :: self.subsets]
                model = scale * self._project(x, theta, fov)
                ratio = np.divide(data, model, out=np.zeros_like(data), where=model > 1e-12)
                update = self._backproject(ratio, theta) * scale
                x = np.where(sens[k] > 1e-12, x * update / np.maximum(sens[k], 1e-12), 0.0)
                x[~fov] = 0.0
        return x


class LowCountPETd(RandomSimulatorDict):
    """Dictionary version of :class:`LowCountPET` (same arguments after ``keys``; independent noise per key)."""

    simulator_class = LowCountPET
    backend = LowCountPET.backend
