"""CT degradation: projection-domain low-dose simulation from a (full-dose) HU image.

Physics per slice (parallel beam, monoenergetic):

1. HU -> linear attenuation ``mu = mu_water * (1 + HU / 1000)`` (negative values set to 0).
2. Line integrals ``p = radon(mu) * spacing`` over ``num_views`` angles in [0, 180) degrees.
3. Low-dose transmission counts ``N = Poisson(f * I0 * exp(-p)) + Normal(0, sigma_e)`` with
   ``f`` the dose fraction, ``I0`` the full-dose incident photons per ray and view, ``sigma_e``
   the electronic noise of an energy-integrating detector (the model of Zeng et al., "A simple
   low-dose X-ray CT simulation from high-dose scan", IEEE Trans Nucl Sci 62(5):2226-2233, 2015;
   see also Yu et al., "Development and validation of a practical lower-dose-simulation tool for
   optimizing CT scan protocols", Med Phys 39(5):2615-2625, 2012). Counts are floored at 1 photon
   before the log, as scanners do for photon-starved rays.
4. ``p_low = -log(N / (f * I0))``; the projection-domain noise ``p_low - p`` is reconstructed by
   filtered back-projection and added to the input (noise insertion). FBP is linear, so this is
   FBP(p_low) with the projector round trip's blur removed: the output keeps the input's
   resolution and mean, and gains noise with CT's correlated, streaky texture.

Noise level. A ray's ``I0`` is the fluence ``incident_photons_per_mm2`` times the detector bin
(one pixel wide, ``slice_thickness_mm`` thick), so finer pixels and thinner slices are noisier,
as on a scanner. The default fluence (8e5 per mm^2 and view over 360 views) is a calibration,
not a paper's number: a full-dose 32 x 24 cm water ellipse at 0.7 mm pixels and 3 mm slices gets
about 11 HU of central noise with the Hann-filtered FBP, the order of the full-dose AAPM-Mayo
abdominal scans, and its quarter dose about 23 HU. Per mm^2 and rotation (2.9e8 photons) it is
within an order of magnitude of the ~1e5 photons per detector element and view over ~1000 views
assumed in the low-dose simulation literature. ``sigma_e**2 = 10`` photons**2 is the order of
electronic noise variance used there. Both depend on scanner, protocol and patient: set them for your data.
``mu_water = 0.0194 /mm`` is water at 70 keV (NIST XCOM), a usual effective energy for 120 kVp.

The region outside the inscribed circle of the (square-padded) slice is outside the simulated
scan field of view: it neither attenuates nor receives noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.transforms import Transform
from scipy import ndimage
from monai.utils import TransformBackends
from skimage.transform import iradon, radon

from monai_tat.errors import UserInputError
from monai_tat.transforms._radon import angles, crop_from_square, inscribed_circle, pad_to_square
from monai_tat.transforms._random import RandomSimulatorDict, SeededNoise
from monai_tat.transforms._slicewise import apply_slicewise, in_plane_spacing

__all__ = ["LowDoseCT", "LowDoseCTd", "estimate_scan_fluence"]

_DEFAULT_SPACING_MM = 0.7  # typical body CT pixel (350 mm field of view, 512 matrix)


class LowDoseCT(SeededNoise, Transform):
    """Simulate a reduced-dose CT scan from a full-dose HU image (see the module docstring).

    Args:
        dose_fraction: simulated dose / input dose in (0, 1]; 0.25 is the quarter dose of the
            AAPM-Mayo data the papers use.
        incident_photons_per_mm2: full-dose photon fluence per mm^2 of detector per view.
        electronic_noise_std: standard deviation of the detector's electronic noise in photons.
        num_views: projection angles over 180 degrees; cost grows linearly with it.
        mu_water: linear attenuation of water in 1/mm.
        pixel_spacing_mm: in-plane pixel size; ``None`` reads it from a MetaTensor's affine and
            falls back to 0.7 mm.
        slice_thickness_mm: reconstructed slice thickness (detector bin height).
        filter_name: FBP filter of ``skimage.transform.iradon`` (``"hann"``, default, a smooth
            kernel like the B30 of the Mayo data; ``"ramp"``, ``"shepp-logan"``, ``"cosine"``,
            ``"hamming"``).
        account_for_input_noise: the input already carries full-dose noise; add only the variance
            missing to reach the low dose (Zeng et al. 2015's principle) instead of treating the
            input as noise-free.
        seed: seed of the transform's random state (``set_random_state`` also works).

    Input: HU, ``(H, W)``, ``(C, H, W)`` or ``(C, H, W, D)`` (slices along the last axis).
    Output: HU, same shape and container, float32.
    """

    backend = [TransformBackends.NUMPY, TransformBackends.TORCH]

    def __init__(
        self,
        dose_fraction: float = 0.25,
        incident_photons_per_mm2: float = 8.0e5,
        electronic_noise_std: float = math.sqrt(10.0),
        num_views: int = 360,
        mu_water: float = 0.0194,
        pixel_spacing_mm: float | None = None,
        slice_thickness_mm: float = 3.0,
        filter_name: str = "hann",
        account_for_input_noise: bool = False,
        seed: int | None = None,
    ) -> None:
        if not 0.0 < dose_fraction <= 1.0:
            raise UserInputError(f"LowDoseCT: dose_fraction must be in (0, 1], got {dose_fraction}.")
        if not (incident_photons_per_mm2 > 0 and slice_thickness_mm > 0 and mu_water > 0 and electronic_noise_std >= 0):
            raise UserInputError(
                "LowDoseCT: incident_photons_per_mm2, slice_thickness_mm and mu_water must be > 0, "
                "electronic_noise_std >= 0."
            )
        if int(num_views) < 2:
            raise UserInputError(f"LowDoseCT: num_views must be >= 2, got {num_views}.")
        if pixel_spacing_mm is not None and not pixel_spacing_mm > 0:
            raise UserInputError(f"LowDoseCT: pixel_spacing_mm must be > 0, got {pixel_spacing_mm}.")
        self.dose_fraction = float(dose_fraction)
        self.incident_photons_per_mm2 = float(incident_photons_per_mm2)
        self.slice_thickness_mm = float(slice_thickness_mm)
        self.electronic_noise_std = float(electronic_noise_std)
        self.num_views = int(num_views)
        self.mu_water = float(mu_water)
        self.pixel_spacing_mm = pixel_spacing_mm
        self.filter_name = filter_name
        self.account_for_input_noise = bool(account_for_input_noise)
        self._seed = 0
        if seed is not None:
            self.set_random_state(seed)

    def __call__(self, img: np.ndarray | torch.Tensor, randomize: bool = True) -> np.ndarray | torch.Tensor:
        rng = self.noise_generator(randomize)
        spacing = self.pixel_spacing_mm or in_plane_spacing(img, _DEFAULT_SPACING_MM)
        fraction, sigma_e = self._noise_model()
        return apply_slicewise(img, lambda s: self._slice(s, spacing, fraction, sigma_e, rng), type(self).__name__)

    def _noise_model(self) -> tuple[float, float]:
        """Dose fraction and electronic noise std of the noise that is actually simulated."""
        f, sigma = self.dose_fraction, self.electronic_noise_std
        if not self.account_for_input_noise:
            return f, sigma
        if f >= 1.0:
            return 1.0, 0.0  # nothing to add
        # log-domain variances add: 1/(f I0 t) - 1/(I0 t) = 1/(f' I0 t) with f' = f / (1 - f);
        # electronic part sigma^2 (1/f^2 - 1) / (I0 t)^2 = sigma'^2 / (f' I0 t)^2.
        f_extra = f / (1.0 - f)
        return f_extra, sigma * f_extra * math.sqrt(1.0 / f**2 - 1.0)

    def _slice(self, hu: np.ndarray, spacing: float, fraction: float, sigma_e: float, rng) -> np.ndarray:
        if fraction >= 1.0 and sigma_e == 0.0 and self.account_for_input_noise:
            return hu.copy()
        size = max(hu.shape)
        mu = pad_to_square(np.clip(self.mu_water * (1.0 + hu / 1000.0), 0.0, None), size)
        fov = inscribed_circle(size)
        mu[~fov] = 0.0  # outside the scan field of view
        theta = angles(self.num_views)
        line_integrals = radon(mu, theta=theta, circle=True) * spacing
        # a detector bin is one pixel wide (parallel beam) and one slice thick
        blank = fraction * self.incident_photons_per_mm2 * spacing * self.slice_thickness_mm
        counts = rng.poisson(blank * np.exp(-line_integrals)).astype(np.float64)
        if sigma_e > 0:
            counts += rng.normal(0.0, sigma_e, size=counts.shape)
        noisy = -np.log(np.maximum(counts, 1.0) / blank)
        noise_mu = iradon(noisy - line_integrals, theta=theta, circle=True, filter_name=self.filter_name) / spacing
        noise_hu = noise_mu * (1000.0 / self.mu_water)
        noise_hu[~fov] = 0.0
        return hu + crop_from_square(noise_hu, hu.shape)


class LowDoseCTd(RandomSimulatorDict):
    """Dictionary version of :class:`LowDoseCT` (same arguments after ``keys``; independent noise per key)."""

    simulator_class = LowDoseCT
    backend = LowDoseCT.backend


def _local_variance(image: np.ndarray, size: int) -> np.ndarray:
    mean = ndimage.uniform_filter(image, size)
    return np.maximum(ndimage.uniform_filter(image * image, size) - mean * mean, 0.0)


def estimate_scan_fluence(
    hu: np.ndarray,
    pixel_spacing_mm: float,
    slice_thickness_mm: float,
    max_slices: int = 6,
    window: int = 7,
    seed: int = 0,
    **simulator: float,
) -> float | None:
    """The full-dose fluence at which :class:`LowDoseCT` reproduces the noise a real scan already has.

    "Quarter dose" of a real scan means a quarter of *its* dose. ``LowDoseCT(account_for_input_noise=True)``
    adds the noise missing between a full dose at ``incident_photons_per_mm2`` and the reduced dose;
    that is a quarter of the scan's own dose only if the scan's noise is the simulator's full-dose
    noise at that fluence. This function finds that fluence: on up to ``max_slices`` slices it
    compares the scan's local variance (``window`` x ``window`` pixels) with that of one simulated
    full-dose noise field, over flat soft tissue (-150..150 HU, eroded, the flatter half by the
    gradient of the smoothed image, so the mask does not depend on the noise itself), and scales the
    default fluence by their ratio (noise variance is inversely proportional to fluence). Remaining
    anatomy in the flat mask makes the scan look noisier, so the estimate errs towards a lower
    fluence.

    Args:
        hu: ``(H, W)`` or ``(H, W, D)`` HU image, slices along the last axis.
        pixel_spacing_mm, slice_thickness_mm: as :class:`LowDoseCT`.
        simulator: other :class:`LowDoseCT` arguments (``incident_photons_per_mm2`` is the start).

    Returns:
        Photons per mm^2 and view, or ``None`` when the slices hold too little soft tissue
        (fewer than 500 flat pixels) to measure noise.
    """
    volume = np.asarray(hu, dtype=np.float32)
    volume = volume[..., None] if volume.ndim == 2 else volume
    if volume.ndim != 3:
        raise UserInputError(f"estimate_scan_fluence: expected an (H, W) or (H, W, D) HU image, got shape {volume.shape}.")
    reference_fluence = float(simulator.pop("incident_photons_per_mm2", 8.0e5))
    full_dose_noise = LowDoseCT(0.5, incident_photons_per_mm2=reference_fluence, pixel_spacing_mm=pixel_spacing_mm,
                                slice_thickness_mm=slice_thickness_mm, account_for_input_noise=True, seed=seed, **simulator)
    # (f = 0.5 with account_for_input_noise adds exactly the full-dose variance once more)
    scan_variance, simulated_variance, pixels = 0.0, 0.0, 0
    for k in np.unique(np.linspace(0, volume.shape[2] - 1, max_slices).round().astype(int)):
        image = volume[:, :, k]
        tissue = ndimage.binary_erosion((image > -150) & (image < 150), np.ones((window, window)))
        if tissue.sum() < 2 * window * window:
            continue
        smooth_gradient = np.hypot(*np.gradient(ndimage.gaussian_filter(image, 2.0)))
        flat = tissue & (smooth_gradient <= np.median(smooth_gradient[tissue]))
        noise = np.asarray(full_dose_noise(image[None]))[0] - image
        scan_variance += float(_local_variance(image, window)[flat].sum())
        simulated_variance += float(_local_variance(noise, window)[flat].sum())
        pixels += int(flat.sum())
    if pixels < 500 or scan_variance <= 0:
        return None
    return reference_fluence * simulated_variance / scan_variance
