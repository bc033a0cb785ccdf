"""Low/high-quality training pairs from high-quality images, with the package's own simulators.

Each task's pair follows the same imaging chain for the reference (``hq``) and the degraded image
(``lq``), as real paired data does:

- CT: ``hq`` is the real scan (it already carries its full-dose noise) or a phantom given full-dose
  noise; ``lq`` adds the noise missing to reach the reduced dose (:class:`LowDoseCT` with
  ``account_for_input_noise``). HU, rounded to integers as scanners store them.
- PET: ``hq`` is the noise-free activity map plus full-dose counting noise; ``lq`` adds the noise
  missing to reach the reduced count level (:class:`LowCountPET`, ``q = DRF - 1``). Both SUV, float.
- MRI: ``hq`` is the real magnitude image on the papers' 12-bit scale (its 99.5th percentile put
  at a drawn level in [2000, 3500], with drawn Rician noise, clipped to [0, 4095], integers);
  ``lq`` is its 4x k-space truncation (:class:`KSpaceTruncation`), rounded to integers like a
  scanner's export. The two differ by the truncation only.

MRI augmentation (:func:`mri_augment`, training and validation pairs of real images) moves the
truncation band across anatomical frequencies: each volume is resampled in-plane to a drawn pixel
size (0.6-1.6 mm, never more than 1.25 times finer than the scan's own: a larger upsampling
leaves the top of the reference's spectrum empty and teaches smoothness; by Fourier resampling,
as a scanner acquiring at that resolution would),
rotated in-plane by a random angle, flipped, and given a random intensity gamma; :func:`mri_pair`
then adds Rician noise from none to a clinical level.

Strength is drawn around the papers' settings unless given: CT dose fraction 0.15-0.35 (quarter
dose) of a full-dose fluence 0.3-1.5 times the scan's own (real scans: the fluence at which the
simulator's full-dose noise equals the scan's measured noise); PET dose reduction factor 8-16
(DRF 12) and a count level of 0.1-1.6 times (log-uniform) the package's level for the voxel size
(:func:`monai_tat.transforms.simulators.geometry_arguments`); MRI factor 4.

"Clean input" pairs (:func:`clean_input_strength`, :data:`CLEAN_INPUT`) put the CT dose or the
PET count level close to the reference's own, so that the network learns to leave an image of
full-dose quality nearly as it is instead of smoothing away its detail.

Phantoms (:func:`phantom_pair`, used by both ``prepare_data.py`` and ``train.py``) go through the
same chain: a stack of procedural phantom slices (:func:`monai_tat.demo.phantoms.phantom_slice`)
with a drawn pixel size, CT at a full-dose fluence of 2e4-1.5e5 photons / mm^2 (the phantoms are
smaller and attenuate less than an adult abdomen, so this lower fluence gives them clinical
quarter-dose noise).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np

from monai_tat.demo.phantoms import phantom_slice
from monai_tat.io import atomic_write
from monai_tat.tasks import get_task
from monai_tat.transforms import KSpaceTruncation, LowCountPET, LowDoseCT
from monai_tat.transforms.simulators import geometry_arguments

__all__ = ["CT_RANGES", "PET_RANGES", "MRI_RANGES", "MRI_AUGMENT", "PHANTOM_PIXEL_MM", "PHANTOM_CT_FLUENCE", "CLEAN_INPUT",
           "clean_input_strength",
           "SETTINGS", "ct_pair", "pet_pair", "mri_pair", "mri_augment", "pixel_range", "resample_in_plane", "rician_noise",
           "pet_counts", "phantom_volume", "phantom_fluence_scale", "phantom_pair", "write_nifti"]

CT_RANGES = {"dose_fraction": (0.15, 0.35), "fluence_scale": (0.3, 1.5)}
#: PET count level, log-uniform over a factor of 16 (short frames, low injected activity or a
#: less sensitive scanner at the low end): trained only on count levels of 0.45-1.6, the network
#: smoothed brain maps at half the nominal count level less than a linear filter does, and
#: gained no more on them than at the nominal level (see the model card).
PET_RANGES = {"dose_reduction_factor": (8.0, 16.0), "count_scale": (0.1, 1.6)}
MRI_RANGES = {"p995_level": (2000.0, 3500.0)}
#: MRI augmentation: in-plane pixel size (mm, stratified over a volume's pairs; at most
#: ``max_upsampling`` times finer than the scan's own), gamma (log-uniform),
#: the chance of a noise-free pair, and the Rician noise sigma as a fraction of the 99.5th
#: percentile (log-uniform; about 0.5 % is a high-SNR research scan, 4 % a fast clinical one).
MRI_AUGMENT = {"pixel_mm": (0.6, 1.6), "max_upsampling": 1.25, "gamma": (0.7, 1.4), "noise_free_chance": 0.25,
               "noise_fraction": (0.005, 0.04)}
#: In-plane pixel size (mm) drawn for each task's phantoms.
PHANTOM_PIXEL_MM = {"ct": (0.6, 1.4), "pet": (2.5, 4.5), "mri": (0.8, 1.2)}
#: Full-dose fluence (photons / mm^2 per view, log-uniform) of the CT phantoms.
PHANTOM_CT_FLUENCE = (2.0e4, 1.5e5)
#: Strength of the "clean input" pairs (log-uniform): a dose or count level close to the reference's
#: own. Trained only on low-dose inputs, a network smooths a full-dose image as hard as a low-dose
#: one and removes real detail; these pairs teach it to leave an already clean image nearly as it
#: is. CT: a dose fraction of the scan's own (phantoms: also a fluence 8-64 times their usual one, as
#: their reference is otherwise noise-free); PET: dose reduction factor and count level.
CLEAN_INPUT = {"ct_dose_fraction": (0.4, 0.9), "phantom_ct_fluence_gain": (8.0, 64.0),
               "pet_dose_reduction_factor": (1.25, 6.0), "pet_count_scale": (1.0, 12.0)}
#: The strength ranges of every pair, as recorded with the trained weights.
SETTINGS = {"ct": CT_RANGES, "pet": PET_RANGES, "mri": MRI_RANGES, "mri_augment": MRI_AUGMENT,
            "phantoms": {"pixel_mm": PHANTOM_PIXEL_MM, "ct_fluence": PHANTOM_CT_FLUENCE}, "clean_input": CLEAN_INPUT}
# The package's default full-dose fluence, the base of ``fluence_scale`` when no scan fluence is given.
_CT_DEFAULT_FLUENCE = float(inspect.signature(LowDoseCT).parameters["incident_photons_per_mm2"].default)


def _draw(rng: np.random.Generator, value: float | None, bounds: tuple[float, float], log: bool = False) -> float:
    if value is not None:
        return float(value)
    if log:
        return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))
    return float(rng.uniform(*bounds))


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def ct_pair(
    hu: np.ndarray, pixel_mm: float, thickness_mm: float, rng: np.random.Generator, *, noisy_input: bool = True,
    dose_fraction: float | None = None, fluence_scale: float | None = None, scan_fluence: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hq, lq, params)`` of an ``(I, J, K)`` HU volume.

    ``noisy_input=False`` (phantoms): the reference gets full-dose noise first. ``scan_fluence``
    (real scans, from :func:`~monai_tat.transforms.estimate_scan_fluence`): the fluence whose
    full-dose noise is the scan's own, so the dose fraction is relative to the scan's dose;
    ``fluence_scale`` multiplies it (or the simulator's default without it).
    """
    fraction = _draw(rng, dose_fraction, CT_RANGES["dose_fraction"])
    scale = _draw(rng, fluence_scale, CT_RANGES["fluence_scale"], log=True)
    base = scan_fluence if scan_fluence is not None else _CT_DEFAULT_FLUENCE
    common = {"incident_photons_per_mm2": base * scale, "pixel_spacing_mm": pixel_mm,
              "slice_thickness_mm": thickness_mm}
    hq = hu.astype(np.float32)
    if not noisy_input:
        hq = np.asarray(LowDoseCT(1.0, seed=_seed(rng), **common)(hq[None]))[0]
    lq = np.asarray(LowDoseCT(fraction, account_for_input_noise=True, seed=_seed(rng), **common)(hq[None]))[0]
    window = get_task("ct").model_range
    hq, lq = (np.clip(np.round(x), *window) for x in (hq, lq))
    params = {"dose_fraction": fraction, "fluence_scale": scale, "scan_fluence": scan_fluence, **common,
              "hq_noise_added": not noisy_input}
    return hq, lq, params


def pet_counts(spacing: tuple[float, float, float], independent_slices: bool) -> float:
    """LowCountPET's count level for a voxel size ``(I, J, K)`` in mm (the package's rule); independent
    slices count as cubes of their first pixel size."""
    slice_mm = None if independent_slices else spacing[2]
    return geometry_arguments("pet", spacing[:2], slice_mm)["counts_per_suv_pixel"]


def pet_pair(
    suv: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator, *,
    independent_slices: bool = False, dose_reduction_factor: float | None = None, count_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hq, lq, params)`` of a noise-free ``(I, J, K)`` SUV map: full-dose noise, then the low-dose remainder."""
    drf = _draw(rng, dose_reduction_factor, PET_RANGES["dose_reduction_factor"])
    scale = _draw(rng, count_scale, PET_RANGES["count_scale"], log=True)
    counts = pet_counts(spacing, independent_slices) * scale
    hq = np.asarray(LowCountPET(1.0, counts, account_for_input_noise=False, seed=_seed(rng))(suv[None]))[0]
    lq = np.asarray(LowCountPET(drf, counts, account_for_input_noise=True, seed=_seed(rng))(hq[None]))[0]
    params = {"dose_reduction_factor": drf, "count_scale": scale, "counts_per_suv_pixel": counts}
    return hq.astype(np.float32), lq.astype(np.float32), params


def rician_noise(magnitude: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The magnitude of ``magnitude`` plus complex Gaussian noise of standard deviation ``sigma`` per
    channel (a magnitude image's noise: Rician, a floor of about 1.25 sigma in air)."""
    if sigma <= 0:
        return magnitude.astype(np.float64)
    real = magnitude.astype(np.float64) + rng.normal(0.0, sigma, magnitude.shape)
    return np.hypot(real, rng.normal(0.0, sigma, magnitude.shape))


def mri_pair(
    signal: np.ndarray, rng: np.random.Generator, *, p995_level: float | None = None, factor: float | None = None,
    noise_fraction: float | None = 0.0,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hq, lq, params)`` of an ``(I, J, K)`` magnitude volume on the 12-bit scale.

    ``noise_fraction``: Rician noise sigma added to the reference, as a fraction of its 99.5th
    percentile level; ``None`` draws it from :data:`MRI_AUGMENT` (none with
    ``noise_free_chance``), ``0`` (default) adds none. ``lq`` is the truncation of the noisy
    reference, so the two differ by the truncation only.
    """
    level = _draw(rng, p995_level, MRI_RANGES["p995_level"])
    if noise_fraction is None:
        noise_fraction = (0.0 if rng.uniform() < MRI_AUGMENT["noise_free_chance"]
                          else _draw(rng, None, MRI_AUGMENT["noise_fraction"], log=True))
    reference = float(np.percentile(signal, 99.5))
    gain = level / reference if reference > 0 else 1.0
    noisy = rician_noise(signal.astype(np.float64) * gain, float(noise_fraction) * level, rng)
    hq = np.clip(np.round(noisy), 0.0, 4095.0).astype(np.float32)
    k = float(factor if factor is not None else get_task("mri").simulator_defaults["factor"])
    lq = np.asarray(KSpaceTruncation(k)(hq[None]))[0]
    lq = np.clip(np.round(lq), 0.0, 4095.0).astype(np.float32)
    return hq, lq, {"p995_level": level, "gain": gain, "factor": k, "noise_fraction": float(noise_fraction)}


def resample_in_plane(array: np.ndarray, affine: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """``(I, J, K)`` magnitude volume resampled along I and J to square pixels of about ``pixel_mm``.

    Fourier resampling (:func:`scipy.signal.resample`: k-space cropped or zero-padded), as a
    scanner acquiring the same field of view at that resolution would; the magnitude is kept, as
    scanners export it. The matrix becomes ``round(n * spacing / pixel_mm)`` per axis and the
    pixel size exactly ``n * spacing / matrix``, so the field of view (its outer edges) and the
    slice axis are unchanged. Returns the array (float32) and its RAS affine.
    """
    from scipy.signal import resample

    out = array.astype(np.float64)
    new_affine = np.asarray(affine, dtype=np.float64).copy()
    for axis in (0, 1):
        n = array.shape[axis]
        spacing = float(np.linalg.norm(affine[:3, axis]))
        m = max(8, int(round(n * spacing / pixel_mm)))
        if m != n:
            out = resample(out, m, axis=axis)
        scale = n / m
        # the first voxel's centre moves so that the outer edge of the field stays where it was
        new_affine[:3, axis] = affine[:3, axis] * scale
        new_affine[:3, 3] += 0.5 * (new_affine[:3, axis] - affine[:3, axis])
    return np.abs(out).astype(np.float32), new_affine


def pixel_range(native_mm: float) -> tuple[float, float]:
    """The in-plane pixel sizes (mm) an MRI of pixel ``native_mm`` is resampled to: :data:`MRI_AUGMENT`
    ``pixel_mm``, its lower end raised to ``native_mm / max_upsampling`` (a scan coarser than the
    range's top gets the top)."""
    low, high = MRI_AUGMENT["pixel_mm"]
    low = min(max(low, native_mm / MRI_AUGMENT["max_upsampling"]), high)
    return low, high


def mri_augment(
    signal: np.ndarray, affine: np.ndarray, rng: np.random.Generator, *, pixel_bin: tuple[int, int] = (0, 1),
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One augmented copy of a real ``(I, J, K)`` magnitude volume: in-plane resampling, rotation,
    flips and gamma (noise comes with :func:`mri_pair`).

    ``pixel_bin = (b, n)`` draws the pixel size from the ``b``-th of ``n`` equal log-spaced bins of
    the volume's range (:func:`pixel_range`), so its ``n`` pairs cover the whole range. Rotation is
    about K (cubic spline, same matrix, corners 0); flips of I and J each with chance 1/2 (the
    affine is kept: the anatomy, not the frame, moves). Gamma acts on the signal relative to its
    99.5th percentile. Returns ``(array, affine, params)``.
    """
    from scipy import ndimage

    b, n = pixel_bin
    native = min(float(np.linalg.norm(affine[:3, a])) for a in (0, 1))
    edges = np.linspace(*np.log(pixel_range(native)), n + 1)
    pixel = float(np.exp(rng.uniform(edges[b], edges[b + 1])))
    array, affine = resample_in_plane(signal, affine, pixel)
    angle = float(rng.uniform(0.0, 360.0))
    array = np.clip(ndimage.rotate(array, angle, axes=(0, 1), reshape=False, order=3, cval=0.0), 0.0, None)
    flips = [bool(rng.uniform() < 0.5) for _ in range(2)]
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
    gamma = _draw(rng, None, MRI_AUGMENT["gamma"], log=True)
    reference = float(np.percentile(array, 99.5))
    if reference > 0:
        array = reference * (array / reference) ** gamma
    params = {"pixel_mm": float(np.linalg.norm(affine[:3, 0])), "rotation_deg": angle, "flips": flips,
              "gamma": gamma}
    return np.ascontiguousarray(array, dtype=np.float32), affine, params


def phantom_volume(task: str, size: int, slices: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """A stack of ``slices`` independent ``size x size`` phantom slices of ``task`` in physical units.

    Returns ``(array (I, J, K) float32, RAS affine (4, 4), {"pixel_mm": ...})``; the pixel size is
    drawn from :data:`PHANTOM_PIXEL_MM`, slices are 3 mm apart (PET: cubic voxels).
    """
    pixel = float(rng.uniform(*PHANTOM_PIXEL_MM[task]))
    # phantom rows run anterior -> posterior: they become the J axis
    stack = np.stack([phantom_slice(rng, task, (size, size), pixel_mm=pixel).T for _ in range(slices)], axis=-1)
    affine = np.diag([-pixel, -pixel, 3.0 if task != "pet" else pixel, 1.0])
    return stack.astype(np.float32), affine, {"pixel_mm": pixel}


def phantom_fluence_scale(rng: np.random.Generator) -> float:
    """A CT phantom's full-dose fluence (:data:`PHANTOM_CT_FLUENCE`, log-uniform) relative to the package's default."""
    low, high = (f / _CT_DEFAULT_FLUENCE for f in PHANTOM_CT_FLUENCE)
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def clean_input_strength(task: str, rng: np.random.Generator, phantom: bool = False) -> dict[str, float]:
    """Keyword arguments of :func:`ct_pair` / :func:`pet_pair` for one "clean input" pair (:data:`CLEAN_INPUT`).

    Args:
        task: "ct" or "pet" (MRI pairs differ by the truncation only: there is no dose to raise).
        rng: the pair's generator.
        phantom: a CT phantom (noise-free reference): its fluence is raised too.
    """
    if task == "ct":
        strength = {"dose_fraction": _draw(rng, None, CLEAN_INPUT["ct_dose_fraction"], log=True)}
        if phantom:
            gain = _draw(rng, None, CLEAN_INPUT["phantom_ct_fluence_gain"], log=True)
            strength["fluence_scale"] = phantom_fluence_scale(rng) * gain
        return strength
    if task == "pet":
        return {"dose_reduction_factor": _draw(rng, None, CLEAN_INPUT["pet_dose_reduction_factor"], log=True),
                "count_scale": _draw(rng, None, CLEAN_INPUT["pet_count_scale"], log=True)}
    raise ValueError(f"clean-input pairs exist for CT and PET, not {task!r}")


def phantom_pair(task: str, size: int, slices: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hq, lq, affine, params)`` of a random phantom volume of ``task``: the reference gets full-dose
    noise (CT, PET) and the low-quality partner the same chain as real images (:func:`ct_pair`,
    :func:`pet_pair`, :func:`mri_pair`)."""
    array, affine, params = phantom_volume(task, size, slices, rng)
    spacing = tuple(float(np.linalg.norm(affine[:3, a])) for a in range(3))
    if task == "ct":
        hq, lq, p = ct_pair(array, spacing[0], 3.0, rng, noisy_input=False, fluence_scale=phantom_fluence_scale(rng))
    elif task == "pet":
        hq, lq, p = pet_pair(array, spacing, rng, independent_slices=True)
    else:
        hq, lq, p = mri_pair(array, rng)
    return hq, lq, affine, {**params, **p}


def write_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path, dtype: str = "float32",
                overwrite: bool = True) -> Path:
    """Write an ``(I, J, K)`` array with its RAS affine as NIfTI (``int16`` for integer-valued CT / MRI), atomically."""
    import nibabel as nib

    data = np.asarray(array)
    if dtype == "int16":
        data = np.round(data).astype(np.int16)
    else:
        data = data.astype(np.float32)
    image = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(out, lambda tmp: nib.save(image, str(tmp)), overwrite=overwrite)
