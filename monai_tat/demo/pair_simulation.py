"""Low/high-quality training pairs from high-quality images, with the package's own simulators.

Each task's pair follows the same imaging chain for the reference (``hq``) and the degraded image
(``lq``), as real paired data does:

- CT: ``hq`` is the real scan (it already carries its full-dose noise) or a phantom given full-dose
  noise; ``lq`` adds the noise missing to reach the reduced dose (:class:`LowDoseCT` with
  ``account_for_input_noise``). HU, rounded to integers as scanners store them.
- PET: ``hq`` is the noise-free activity map plus full-dose counting noise; ``lq`` adds the noise
  missing to reach the reduced count level (:class:`LowCountPET`, ``q = DRF - 1``). Both SUV, float.
- MRI: ``hq`` is the real magnitude image on the papers' 12-bit scale (its 99.5th percentile put
  at a drawn level in [2000, 3500], clipped to [0, 4095], integers); ``lq`` is its 4x k-space
  truncation (:class:`KSpaceTruncation`), rounded to integers like a scanner's export.

Strength is drawn around the papers' settings unless given: CT dose fraction 0.15-0.35 (quarter
dose) of a full-dose fluence 0.3-1.5 times the scan's own (real scans: the fluence at which the
simulator's full-dose noise equals the scan's measured noise) or the simulator's default (phantoms); PET dose reduction factor 8-16 (DRF 12) and a count level of 0.6-1.6 times the default for
the voxel size; MRI factor 4.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from monai_tat.io import atomic_write
from monai_tat.transforms import KSpaceTruncation, LowCountPET, LowDoseCT
from monai_tat.tasks import get_task

__all__ = ["CT_RANGES", "PET_RANGES", "MRI_RANGES", "ct_pair", "pet_pair", "mri_pair", "write_nifti", "pet_counts"]

CT_RANGES = {"dose_fraction": (0.15, 0.35), "fluence_scale": (0.3, 1.5)}
PET_RANGES = {"dose_reduction_factor": (8.0, 16.0), "count_scale": (0.6, 1.6)}
MRI_RANGES = {"p995_level": (2000.0, 3500.0)}
_CT_DEFAULT_FLUENCE = 8.0e5  # LowDoseCT's default incident photons per mm^2 and view
_PET_REFERENCE_VOXEL_MM3 = 64.0  # LowCountPET's default count level is for 4 mm voxels


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
    """LowCountPET's count level for a voxel size: the default scaled by the voxel volume."""
    depth = spacing[0] if independent_slices else spacing[2]
    return 200.0 * spacing[0] * spacing[1] * depth / _PET_REFERENCE_VOXEL_MM3


def pet_pair(
    suv: np.ndarray, spacing: tuple[float, float, float], rng: np.random.Generator, *,
    independent_slices: bool = False, dose_reduction_factor: float | None = None, count_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hq, lq, params)`` of a noise-free ``(I, J, K)`` SUV map: full-dose noise, then the low-dose remainder."""
    drf = _draw(rng, dose_reduction_factor, PET_RANGES["dose_reduction_factor"])
    scale = _draw(rng, count_scale, PET_RANGES["count_scale"])
    counts = pet_counts(spacing, independent_slices) * scale
    hq = np.asarray(LowCountPET(1.0, counts, account_for_input_noise=False, seed=_seed(rng))(suv[None]))[0]
    lq = np.asarray(LowCountPET(drf, counts, account_for_input_noise=True, seed=_seed(rng))(hq[None]))[0]
    params = {"dose_reduction_factor": drf, "count_scale": scale, "counts_per_suv_pixel": counts}
    return hq.astype(np.float32), lq.astype(np.float32), params


def mri_pair(
    signal: np.ndarray, rng: np.random.Generator, *, p995_level: float | None = None, factor: float | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(hq, lq, params)`` of an ``(I, J, K)`` magnitude volume on the 12-bit scale."""
    level = _draw(rng, p995_level, MRI_RANGES["p995_level"])
    reference = float(np.percentile(signal, 99.5))
    gain = level / reference if reference > 0 else 1.0
    hq = np.clip(np.round(signal.astype(np.float64) * gain), 0.0, 4095.0).astype(np.float32)
    k = float(factor if factor is not None else get_task("mri").simulator_defaults["factor"])
    lq = np.asarray(KSpaceTruncation(k)(hq[None]))[0]
    lq = np.clip(np.round(lq), 0.0, 4095.0).astype(np.float32)
    return hq, lq, {"p995_level": level, "gain": gain, "factor": k}


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
