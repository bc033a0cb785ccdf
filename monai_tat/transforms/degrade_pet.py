"""PET degradation: low-count (reduced-dose) noise insertion into a full-dose SUV image.

Real low-dose and full-dose PET images come from the same reconstruction of list-mode data
decimated by the dose reduction factor ``r`` (the papers' DRF 12): they share resolution and mean
and differ in noise only. This transform therefore adds zero-mean noise and never reconstructs the
image: the output keeps the input's mean and resolution exactly in expectation.

Noise model, per slice (pixel units; ``x`` the SUV image, ``c = counts_per_suv_pixel``):

1. Counts. One pixel of SUV 1 contributes ``c`` expected true coincidences at full dose (all views),
   so a line through the slice collects ``(c / V) * (line integral of x)`` counts per view ``V``.
2. Variance of a linear reconstruction of those Poisson counts (filtered back-projection with an
   apodising window ``W``, a linear-interpolation back-projector and an optional Gaussian
   post-filter ``G``) at a pixel is ``kappa * M / c``: ``M`` is the mean over views of the line
   integrals through the pixel (SUV x pixels) and ``kappa = pi^2 * integral of rho^2 W^2 sinc^4 G^2
   d rho`` over ``|rho| <= 1/2`` cycles/pixel (Hann: 0.053 unfiltered, 0.029 with the default
   post-filter). Checked against a projection-domain simulation (``radon``, Poisson counts,
   Hann ``iradon``) of a uniform disc of radius 40 pixels: pixel variance within 3 % over the disc,
   neighbour correlations 0.62 / 0.07 / -0.08 (FBP) against 0.64 / 0.08 / -0.10 (this model).
3. Local activity. FBP spreads that variance evenly over the slice; clinical OSEM images put their
   noise where the activity is (little in air and lungs, much in liver and lesions). The variance
   is redistributed in proportion to the local activity ``x~`` (``x`` clipped at 0 and smoothed
   over the noise correlation length) at the slice's activity-weighted mean chord
   ``L = sum(M x~) / sum(x~^2)``, which keeps the FBP value in a uniform object:
   ``var = q * kappa * L * x~ / c``.
4. Dose. The input carries full-dose noise (count level ``c``); the low-dose image has count
   level ``c / r``. Only the missing variance is inserted, ``q = r - 1`` (noise std grows like
   ``sqrt(r - 1)``, DRF 1 returns the input); ``account_for_input_noise=False`` treats the input as
   noise-free and inserts ``q = r`` (std like ``sqrt(r)``), right for phantoms and activity maps.
5. Texture. A Gaussian random field ``z`` of unit variance with the 2D noise power spectrum of
   that reconstruction, ``|rho| W^2 sinc^4 G^2`` (0 beyond ``|rho| = 1/2``). Counts are many per
   reconstructed pixel, so the Gaussian limit of the Poisson counts sets the spectrum.
6. Marginal. EM-type reconstructions are close to log-normal (Barrett, Wilson and Tsui, Phys Med
   Biol 39:833, 1994): the output is ``x * exp(s z - s^2 / 2)`` with ``s^2 = log(1 + var / x^2)``,
   which has mean ``x`` and variance ``var`` exactly, is non-negative where ``x`` is, and is skewed
   like a low-count image in cold regions. Negative input values (no counts) pass unchanged.

Count calibration. The default ``c = 200`` gives about 1e6 true counts for a body slice of ~5000
pixels at mean SUV 1 (4 mm pixels), the order of a clinical whole-body 18F-FDG bed position per
slice. With the default Hann kernel and 1.5-pixel post-filter (6 mm at 4 mm pixels), the full-dose
noise (``q = 1``) at the centre of a uniform SUV-1 ellipse of 32 x 40 cm at 4 mm pixels is about
10 % (standard deviation / mean), the order of clinical liver noise, and DRF 12 adds about 34 %.
For other voxel sizes scale ``c`` with the voxel volume (``monai_tat.data.paired`` does).

Non-negativity without bias. Clipping additive noise at 0 would raise the mean of cold regions
(the positive bias of OSEM at low counts); the log-normal marginal keeps both the mean and the sign.

Not modelled: attenuation, scatter, randoms, normalisation, detector geometry, noise correlation
between slices; the count level is a single number.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from monai.transforms import Transform
from monai.utils import TransformBackends
from scipy.integrate import trapezoid
from scipy.ndimage import gaussian_filter

from monai_tat.errors import UserInputError
from monai_tat.transforms._random import RandomSimulatorDict, SeededNoise
from monai_tat.transforms._slicewise import apply_slicewise

__all__ = ["LowCountPET", "LowCountPETd", "FILTERS"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: FBP apodising windows the noise texture can follow (names as in ``skimage.transform.iradon``).
FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
_DEFAULT_POSTFILTER_FWHM_PIXELS = 1.5


def _window(rho: np.ndarray, name: str) -> np.ndarray:
    """FBP apodising window at ``|rho|`` cycles/pixel (1 at 0; defined up to Nyquist 1/2)."""
    if name == "ramp":
        return np.ones_like(rho)
    if name == "shepp-logan":
        return np.sinc(rho)
    if name == "cosine":
        return np.cos(np.pi * rho)
    if name == "hamming":
        return 0.54 + 0.46 * np.cos(2.0 * np.pi * rho)
    return 0.5 + 0.5 * np.cos(2.0 * np.pi * rho)  # hann


def _transfer(rho: np.ndarray, name: str, postfilter_fwhm: float) -> np.ndarray:
    """Reconstruction's noise transfer at radial frequency ``rho``: window, interpolation, post-filter."""
    sigma = postfilter_fwhm * _FWHM_TO_SIGMA
    inside = np.abs(rho) <= 0.5
    # linear interpolation in the back-projector (triangle kernel: sinc^2) and a Gaussian post-filter
    shape = _window(np.abs(rho), name) * np.sinc(rho) ** 2 * np.exp(-2.0 * (np.pi * sigma * rho) ** 2)
    return np.where(inside, shape, 0.0)


@lru_cache(maxsize=32)
def _noise_gain(name: str, postfilter_fwhm: float) -> float:
    """``kappa``: reconstructed variance per unit (mean line integral / counts per SUV pixel)."""
    rho = np.linspace(-0.5, 0.5, 20001)
    return float(math.pi**2 * trapezoid(rho**2 * _transfer(rho, name, postfilter_fwhm) ** 2, rho))


def _power(rho: np.ndarray, name: str, postfilter_fwhm: float) -> np.ndarray:
    """2D noise power spectrum of the reconstruction (unnormalised): ramp times the transfer squared."""
    return rho * _transfer(rho, name, postfilter_fwhm) ** 2


@lru_cache(maxsize=16)
def _field_amplitude(shape: tuple[int, int], name: str, postfilter_fwhm: float) -> np.ndarray:
    """Square root of the 2D noise power spectrum on the FFT grid, scaled to unit pixel variance."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    full_power = _power(np.hypot(fy, np.fft.fftfreq(shape[1])[None, :]), name, postfilter_fwhm)
    power = _power(np.hypot(fy, np.fft.rfftfreq(shape[1])[None, :]), name, postfilter_fwhm)
    # pixel variance of irfft2(rfft2(white) * A) is the mean of A^2 over the full FFT grid
    return np.sqrt(power / max(float(full_power.mean()), 1e-30))


@lru_cache(maxsize=16)
def _chord_kernel_spectrum(padded: tuple[int, int]) -> np.ndarray:
    """rFFT of ``1 / (pi r)``: convolving an image with it gives the mean line integral through each pixel."""
    yy = np.fft.fftfreq(padded[0], 1.0 / padded[0])[:, None]
    xx = np.fft.fftfreq(padded[1], 1.0 / padded[1])[None, :]
    radius = np.hypot(yy, xx)
    kernel = np.divide(1.0, math.pi * radius, out=np.zeros(padded), where=radius > 0)
    kernel[0, 0] = 2.0 / math.sqrt(math.pi)  # integral of 1/(pi r) over a disc of one pixel's area
    return np.fft.rfft2(kernel)


def mean_line_integral(activity: np.ndarray) -> np.ndarray:
    """``M``: mean over all directions of the line integral of ``activity`` through each pixel.

    Args:
        activity: ``(H, W)`` non-negative image.

    Returns:
        ``(H, W)`` in activity x pixels (a uniform disc of radius ``R``: ``2 R`` times its value at the centre).
    """
    h, w = activity.shape
    padded = (2 * h, 2 * w)  # zero padding: linear, not circular, convolution
    spectrum = np.fft.rfft2(activity, s=padded) * _chord_kernel_spectrum(padded)
    return np.fft.irfft2(spectrum, s=padded)[:h, :w]


class LowCountPET(SeededNoise, Transform):
    """Simulate a reduced-dose PET image from a full-dose SUV image by noise insertion (module docstring).

    Args:
        dose_reduction_factor: full dose / simulated dose ``r`` (>= 1); 12 as in the papers.
        counts_per_suv_pixel: expected full-dose true counts from one pixel of SUV 1 (all views).
        filter_name: FBP window the noise texture follows (:data:`FILTERS`; ``"hann"`` default).
        postfilter_fwhm_pixels: FWHM of the reconstruction's Gaussian post-filter in pixels, which
            sets the noise grain (0 = none). The input is assumed to already have the resolution of
            that reconstruction: it is not filtered.
        account_for_input_noise: the input already carries full-dose noise, so only the missing
            variance ``(r - 1) / c`` is added (default); False treats the input as noise-free and adds
            ``r / c`` (phantoms, activity maps).
        seed: seed of the transform's random state (``set_random_state`` also works).

    Input: SUV, ``(H, W)``, ``(C, H, W)`` or ``(C, H, W, D)`` (slices along the last axis).
    Output: SUV, same shape and container, float32 (float64 stays float64); non-negative where the input is.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        dose_reduction_factor: float = 12.0,
        counts_per_suv_pixel: float = 200.0,
        filter_name: str = "hann",
        postfilter_fwhm_pixels: float = _DEFAULT_POSTFILTER_FWHM_PIXELS,
        account_for_input_noise: bool = True,
        seed: int | None = None,
    ) -> None:
        if not dose_reduction_factor >= 1.0:
            raise UserInputError(f"LowCountPET: dose_reduction_factor must be >= 1, got {dose_reduction_factor}.")
        if not counts_per_suv_pixel > 0:
            raise UserInputError(f"LowCountPET: counts_per_suv_pixel must be > 0, got {counts_per_suv_pixel}.")
        if filter_name not in FILTERS:
            raise UserInputError(f"LowCountPET: filter_name must be one of {', '.join(FILTERS)}, got {filter_name!r}.")
        if not postfilter_fwhm_pixels >= 0:
            raise UserInputError(f"LowCountPET: postfilter_fwhm_pixels must be >= 0, got {postfilter_fwhm_pixels}.")
        self.dose_reduction_factor = float(dose_reduction_factor)
        self.counts_per_suv_pixel = float(counts_per_suv_pixel)
        self.filter_name = filter_name
        self.postfilter_fwhm_pixels = float(postfilter_fwhm_pixels)
        self.account_for_input_noise = bool(account_for_input_noise)
        self._seed = 0
        if seed is not None:
            self.set_random_state(seed)

    @property
    def variance_factor(self) -> float:
        """``q``: inserted variance in units of the full-dose variance (``r - 1``, or ``r``)."""
        r = self.dose_reduction_factor
        return r - 1.0 if self.account_for_input_noise else r

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> np.ndarray | torch.Tensor:
        rng = self.noise_generator(randomize)
        return apply_slicewise(img, lambda s: self._slice(s, rng), type(self).__name__)

    def noise_variance(self, suv: np.ndarray) -> np.ndarray:
        """Variance (SUV^2) of the noise this transform adds to an ``(H, W)`` SUV slice."""
        activity = np.clip(np.asarray(suv, dtype=np.float64), 0.0, None)
        q = self.variance_factor
        if q <= 0 or not activity.any():
            return np.zeros(activity.shape)
        # a reconstructed pixel's counts come from its neighbourhood (~1 pixel for FBP, plus the post-filter)
        sigma = math.hypot(1.0, self.postfilter_fwhm_pixels * _FWHM_TO_SIGMA)
        local = np.clip(gaussian_filter(activity, sigma, mode="constant"), 0.0, None)
        chords = mean_line_integral(local)
        chord = float((chords * local).sum() / max(float((local**2).sum()), 1e-30))
        gain = _noise_gain(self.filter_name, self.postfilter_fwhm_pixels)
        return q * gain * chord * local / self.counts_per_suv_pixel

    def _slice(self, suv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        variance = self.noise_variance(suv)
        white = rng.standard_normal(suv.shape)  # drawn even when unused: the stream stays aligned
        if not variance.any():
            return suv.copy()
        amplitude = _field_amplitude(suv.shape, self.filter_name, self.postfilter_fwhm_pixels)
        field = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=suv.shape)  # zero mean, unit variance
        # log-normal noise of mean 1 and variance ``variance / activity^2`` multiplies the activity:
        # unbiased, non-negative, EM-like (Barrett, Wilson and Tsui, Phys Med Biol 39:833, 1994)
        activity = np.clip(suv, 0.0, None)
        log_var = np.log1p(np.divide(variance, activity**2, out=np.zeros_like(activity), where=activity > 0))
        factor = np.exp(np.sqrt(log_var) * field - 0.5 * log_var)
        return suv + activity * (factor - 1.0)  # negative input values (no counts) pass unchanged


class LowCountPETd(RandomSimulatorDict):
    """Dictionary version of :class:`LowCountPET` (same arguments after ``keys``; independent noise per key)."""

    simulator_class = LowCountPET
    backend = LowCountPET.backend
