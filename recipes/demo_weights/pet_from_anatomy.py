"""FDG-like PET activity maps (SUV) built from real CT or MRI anatomy.

No real PET image ships in a package this project can install, so PET training pairs are made
from real anatomy: every voxel of a CT (HU) or MRI volume gets a tissue class, each class an SUV
drawn per volume inside a physiological 18F-FDG range, the map gets smooth uptake heterogeneity
and a few hot lesions, and is brought to PET resolution (Gaussian PSF of 4-6 mm FWHM, 2-4 mm
pixels). The result is noise-free; :class:`monai_tat.transforms.LowCountPET` adds the counting noise.

Tissue classes come from simple rules, not a segmentation model:

- CT: air < -950 HU < lung < -400 HU (inside the body) < ... ; fat -200..-30 HU; soft tissue
  -30..150 HU, split by depth below the skin into muscle (superficial) and viscera (deep: heart,
  blood pool, mediastinum, liver, spleen); bone 150..600 HU marrow, above cortical bone. In a
  head CT the soft tissue inside the skull is CSF (< 15 HU) or, by its smoothed HU, grey or white
  matter.
- MRI: the head and, inside the dark skull, the brain from the signal; scalp is muscle, dark
  voxels bone (outside the brain) or CSF (inside); intensity classes in the brain (Otsu, or
  ranks at typical fractions when the contrast is weak) ordered by the contrast: T1 grey <
  white matter; T2 / proton density / b0 white < grey matter < CSF.

Arrays are ``(I, J, K)`` with the slices along the last axis (K may be 1); ``spacing`` in mm.
These maps are training data, not a validated model of FDG biodistribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "LABELS",
    "SUV_RANGES",
    "PETMap",
    "ct_tissue_labels",
    "mri_tissue_labels",
    "draw_suv_values",
    "activity_from_labels",
    "add_hot_lesions",
    "to_pet_resolution",
    "pet_map_from_ct",
    "pet_map_from_mri",
]

#: Tissue classes of the label maps (index = label value).
LABELS = (
    "air", "lung", "fat", "muscle", "viscera", "marrow", "cortical_bone", "csf", "grey_matter", "white_matter",
)
_L = {name: i for i, name in enumerate(LABELS)}

#: 18F-FDG SUV range of each class; each map draws one value per class inside its range.
SUV_RANGES: dict[str, tuple[float, float]] = {
    "air": (0.0, 0.0),
    "lung": (0.3, 0.7),
    "fat": (0.3, 0.5),
    "muscle": (0.8, 1.2),
    "viscera": (1.5, 2.5),  # blood pool / mediastinum 1.5-2, liver 2-2.5
    "marrow": (1.5, 2.0),
    "cortical_bone": (0.3, 0.5),
    "csf": (0.2, 0.4),
    "grey_matter": (8.0, 12.0),
    "white_matter": (3.0, 4.0),
}
LESION_SUV = (4.0, 15.0)
LESION_DIAMETER_MM = (5.0, 20.0)
PSF_FWHM_MM = (4.0, 6.0)
PET_PIXEL_MM = (2.0, 4.0)
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
# typical fractions of the non-dark brain voxels of an axial slice in each class
_CLASS_FRACTIONS = {"csf": 0.15, "grey_matter": 0.5, "white_matter": 0.35}  # T1 has no bright CSF class


@dataclass
class PETMap:
    """A noise-free activity map at PET resolution.

    Attributes:
        suv: ``(I, J, K)`` float32 SUV.
        spacing: voxel size in mm along I, J, K.
        index_to_source: 4x4 matrix mapping voxel indices of ``suv`` to voxel indices of the source
            volume (compose with the source's affine to get the map's affine).
        params: the drawn class values, PSF, pixel size and lesions (JSON-serialisable).
    """

    suv: np.ndarray
    spacing: tuple[float, float, float]
    index_to_source: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)


# -- tissue classes ----------------------------------------------------------------------------


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    return labels == (1 + int(np.argmax(sizes)))


def _disc(radius_px: float) -> np.ndarray:
    r = max(0, int(round(radius_px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r * r + 1e-9


def ct_tissue_labels(
    hu: np.ndarray, spacing: tuple[float, ...], region: str = "body", deep_mm: float = 25.0
) -> np.ndarray:
    """Tissue label per voxel (indices into :data:`LABELS`) of a CT volume in HU.

    Args:
        hu: ``(I, J, K)`` HU.
        spacing: voxel size in mm (the first two in-plane).
        region: ``"body"`` (chest, abdomen, pelvis) or ``"head"`` (brain classes inside the skull).
        deep_mm: soft tissue deeper than this below the skin counts as viscera.
    """
    labels = np.zeros(hu.shape, dtype=np.uint8)
    pixel = float(np.sqrt(spacing[0] * spacing[1]))
    for k in range(hu.shape[2]):
        labels[:, :, k] = _ct_slice_labels(hu[:, :, k].astype(np.float32), pixel, region, deep_mm)
    return labels


def _ct_slice_labels(hu: np.ndarray, pixel: float, region: str, deep_mm: float) -> np.ndarray:
    body = _largest_component(ndimage.binary_fill_holes(hu > -500.0))
    out = np.zeros(hu.shape, dtype=np.uint8)
    if not body.any():
        return out
    out[body & (hu >= -950) & (hu < -400)] = _L["lung"]
    out[body & (hu >= -400) & (hu < -30)] = _L["fat"]
    soft = body & (hu >= -30) & (hu < 150)
    depth_mm = ndimage.distance_transform_edt(body) * pixel
    out[soft & (depth_mm < deep_mm)] = _L["muscle"]
    out[soft & (depth_mm >= deep_mm)] = _L["viscera"]
    out[body & (hu >= 150) & (hu < 600)] = _L["marrow"]
    out[body & (hu >= 600)] = _L["cortical_bone"]
    if region == "head":
        bone = ndimage.binary_closing(body & (hu >= 300), structure=_disc(2.0 / pixel))
        inside = ndimage.binary_fill_holes(bone) & ~bone & body & (hu > -30) & (hu < 150)
        if inside.sum() * pixel**2 > 500.0:  # at least 5 cm^2 of intracranial tissue
            smooth = ndimage.gaussian_filter(np.clip(hu, -30, 150), 1.5 / pixel)
            csf = inside & (smooth < 15.0)
            tissue = inside & ~csf
            threshold = float(np.median(smooth[tissue])) if tissue.any() else 30.0
            out[csf] = _L["csf"]
            out[tissue & (smooth >= threshold)] = _L["grey_matter"]
            out[tissue & (smooth < threshold)] = _L["white_matter"]
    return out


def _intensity_classes(values: np.ndarray, order: tuple[str, ...]) -> np.ndarray:
    """Class index (into ``order``, darkest first) of each brain voxel's normalised intensity.

    Multi-level Otsu thresholds (the optimal 1D k-means partition; outliers clipped); when they
    leave grey or white matter with under 25 % of the voxels (weak contrast, e.g. contrast-enhanced
    T1), classes by rank at the typical fractions of a brain slice instead.
    """
    from skimage.filters import threshold_multiotsu

    clipped = np.clip(values, *np.percentile(values, [0.5, 99.5]))
    try:  # multi-level Otsu: the optimal 1D k-means partition of the histogram
        assign = np.digitize(values, threshold_multiotsu(clipped, classes=len(order), nbins=128))
    except ValueError:  # too few distinct values for that many classes
        assign = np.zeros(len(values), dtype=np.int64)
    fractions = np.bincount(assign, minlength=len(order)) / max(len(values), 1)
    if all(fractions[order.index(name)] >= 0.25 for name in ("grey_matter", "white_matter")):
        return assign
    share = np.array([_CLASS_FRACTIONS[name] for name in order])
    edges = np.quantile(values, np.cumsum(share / share.sum())[:-1])
    return np.digitize(values, edges)


def mri_tissue_labels(
    signal: np.ndarray, spacing: tuple[float, ...], contrast: str = "t2", skull_margin_mm: float = 0.0
) -> np.ndarray:
    """Tissue label per voxel of a brain MRI volume.

    The head is the largest bright region of each slice; the brain is the largest region left
    once the dark skull (below 35 % of the head's median signal) is removed, its holes filled. The rest
    of the head is scalp (muscle) or bone (dark). Inside the brain, dark voxels are CSF and the
    others, divided by their smooth local mean (a crude bias-field correction), fall into intensity
    classes ordered by the contrast (T1: grey < white matter, CSF being dark; T2: white < grey
    matter < CSF) by multi-level Otsu thresholds, or by rank at typical fractions when the contrast is too weak.

    Args:
        signal: ``(I, J, K)`` magnitude (any scale).
        spacing: voxel size in mm.
        contrast: ``"t1"`` (white matter brightest) or ``"t2"`` (CSF brightest: T2, proton
            density, diffusion b0).
        skull_margin_mm: the brain also lies at least this far inside the head outline (scalp and
            skull where they are visible and may touch the brain: about 7 mm for T1, 0 for EPI).
    """
    if contrast not in ("t1", "t2"):
        raise ValueError(f"contrast must be 't1' or 't2', got {contrast!r}")
    pixel = float(np.sqrt(spacing[0] * spacing[1]))
    smooth = ndimage.gaussian_filter(signal.astype(np.float32), (0.7, 0.7, 0.0))
    scale = float(np.percentile(smooth, 99.0)) or 1.0
    heads = np.zeros(signal.shape, dtype=bool)
    for k in range(signal.shape[2]):
        heads[:, :, k] = _largest_component(ndimage.binary_fill_holes(smooth[:, :, k] > 0.08 * scale))
    # brain tissue fills most of the head: its median is the reference (fat or CSF may be brighter)
    reference = float(np.median(smooth[heads])) if heads.any() else scale
    norm = smooth / max(reference, 1e-12)
    dark = norm < 0.35
    labels = np.zeros(signal.shape, dtype=np.uint8)
    brain = np.zeros(signal.shape, dtype=bool)
    for k in range(signal.shape[2]):
        head = heads[:, :, k]
        bright = ndimage.binary_opening(head & ~dark[:, :, k], structure=_disc(2.5 / pixel))
        inner = ndimage.binary_fill_holes(_largest_component(bright)) if bright.any() else bright
        if skull_margin_mm / pixel >= 1:
            inner &= ndimage.binary_erosion(head, structure=_disc(skull_margin_mm / pixel))
        brain[:, :, k] = inner
        labels[:, :, k][head & ~inner] = _L["muscle"]
        labels[:, :, k][head & ~inner & dark[:, :, k]] = _L["cortical_bone"]
    labels[brain & dark] = _L["csf"]
    tissue = brain & ~dark
    if tissue.sum() >= 30:
        # divide by the smooth local mean of the brain: slow coil shading must not decide the class
        sigma = (40.0 / spacing[0], 40.0 / spacing[1], 0.0)
        local = ndimage.gaussian_filter(np.where(tissue, norm, 0.0), sigma) / np.maximum(
            ndimage.gaussian_filter(tissue.astype(np.float32), sigma), 1e-3)
        values = norm[tissue] / np.maximum(local[tissue], 1e-6)
        order = ("grey_matter", "white_matter") if contrast == "t1" else ("white_matter", "grey_matter", "csf")
        labels[tissue] = np.array([_L[name] for name in order], dtype=np.uint8)[_intensity_classes(values, order)]
    return labels


# -- activity ----------------------------------------------------------------------------------


def draw_suv_values(rng: np.random.Generator) -> dict[str, float]:
    """One SUV per tissue class, uniform inside :data:`SUV_RANGES`."""
    return {name: float(rng.uniform(lo, hi)) if hi > lo else float(lo) for name, (lo, hi) in SUV_RANGES.items()}


def activity_from_labels(
    labels: np.ndarray, values: dict[str, float], spacing: tuple[float, ...], rng: np.random.Generator,
    heterogeneity: float = 0.1, correlation_mm: float = 6.0, independent_slices: bool = False,
) -> np.ndarray:
    """SUV per voxel: the class values times ``1 + heterogeneity * smooth unit-variance field``."""
    table = np.array([values[name] for name in LABELS], dtype=np.float32)
    base = table[labels]
    sigma = [correlation_mm / s for s in spacing[:2]] + [0.0 if independent_slices else correlation_mm / spacing[2]]
    noise = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), sigma, mode="wrap")
    noise /= float(noise.std()) + 1e-12
    return np.clip(base * (1.0 + heterogeneity * noise), 0.0, None).astype(np.float32)


def add_hot_lesions(
    suv: np.ndarray, labels: np.ndarray, spacing: tuple[float, ...], rng: np.random.Generator, count: int,
    independent_slices: bool = False,
) -> list[dict[str, Any]]:
    """Paint ``count`` spherical lesions (SUV 4-15, 5-20 mm) centred in the body, in place; return them."""
    candidates = np.argwhere(labels > 0)
    lesions: list[dict[str, Any]] = []
    if candidates.size == 0:
        return lesions
    for _ in range(count):
        centre = candidates[rng.integers(len(candidates))]
        diameter = float(rng.uniform(*LESION_DIAMETER_MM))
        value = float(rng.uniform(*LESION_SUV))
        radius = diameter / 2.0
        # the sphere's bounding box (one slice when the slices are independent)
        reach = [int(math.ceil(radius / s)) for s in spacing[:3]]
        if independent_slices:
            reach[2] = 0
        box = tuple(slice(max(0, c - r), min(n, c + r + 1)) for c, r, n in zip(centre, reach, suv.shape))
        offsets = np.meshgrid(*[(np.arange(b.start, b.stop) - c) * s for b, c, s in zip(box, centre, spacing)],
                              indexing="ij")
        inside = sum(o**2 for o in offsets) <= radius**2
        suv[box][inside] = value
        lesions.append({"centre_index": [int(c) for c in centre], "diameter_mm": diameter, "suv": value})
    return lesions


def to_pet_resolution(
    suv: np.ndarray, spacing: tuple[float, ...], pixel_mm: float, psf_fwhm_mm: float,
    independent_slices: bool = False, min_size: int = 128,
) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
    """Blur with a Gaussian PSF, resample in-plane (and along K when finer) to ``pixel_mm``, pad.

    Returns the map, its spacing and the 4x4 matrix from its voxel indices to the input's.
    The in-plane size is padded with air (0) to at least ``min_size``, like a PET field of view.
    """
    sigma_mm = psf_fwhm_mm * _FWHM_TO_SIGMA
    sigma = [sigma_mm / s for s in spacing[:2]] + [0.0 if independent_slices else sigma_mm / spacing[2]]
    blurred = ndimage.gaussian_filter(suv.astype(np.float32), sigma, mode="nearest")  # anatomy goes on past the ends
    resample_k = (not independent_slices) and spacing[2] < pixel_mm
    target = [pixel_mm, pixel_mm, pixel_mm if resample_k else spacing[2]]
    shape = [max(1, int(round(n * s / t))) for n, s, t in zip(suv.shape, spacing, target)]
    zoom = [new / old for new, old in zip(shape, suv.shape)]
    resampled = ndimage.zoom(blurred, zoom, order=1, mode="nearest", grid_mode=True) if zoom != [1, 1, 1] else blurred
    new_spacing = tuple(float(s / z) for s, z in zip(spacing, zoom))
    pad = [max(0, min_size - resampled.shape[a]) for a in range(2)] + [0]
    before = [p // 2 for p in pad]
    padded = np.pad(resampled, [(b, p - b) for b, p in zip(before, pad)], mode="constant")
    # index in the map -> index in the source: (i - before + 0.5) / zoom - 0.5 (grid-mode zoom)
    matrix = np.eye(4)
    for a in range(3):
        matrix[a, a] = 1.0 / zoom[a]
        matrix[a, 3] = (0.5 - before[a]) / zoom[a] - 0.5
    return np.clip(padded, 0.0, None).astype(np.float32), new_spacing, matrix


def _map_from_labels(
    labels: np.ndarray, spacing: tuple[float, ...], rng: np.random.Generator, independent_slices: bool,
    pixel_mm: float | None, psf_fwhm_mm: float | None, min_size: int,
) -> PETMap:
    values = draw_suv_values(rng)
    heterogeneity = float(rng.uniform(0.05, 0.15))
    correlation = float(rng.uniform(4.0, 10.0))
    suv = activity_from_labels(labels, values, spacing, rng, heterogeneity, correlation, independent_slices)
    extent_mm = labels.shape[2] * spacing[2] if not independent_slices else 0.0
    count = 1 + int(rng.poisson(0.5 + extent_mm / 100.0))
    if independent_slices and labels.shape[2] > 1:
        count += labels.shape[2] // 3
    lesions = add_hot_lesions(suv, labels, spacing, rng, count, independent_slices)
    pixel = float(pixel_mm if pixel_mm is not None else rng.uniform(*PET_PIXEL_MM))
    fwhm = float(psf_fwhm_mm if psf_fwhm_mm is not None else rng.uniform(*PSF_FWHM_MM))
    pet, pet_spacing, matrix = to_pet_resolution(suv, spacing, pixel, fwhm, independent_slices, min_size)
    params = {"suv_values": values, "heterogeneity": heterogeneity, "heterogeneity_mm": correlation,
              "lesions": lesions, "pixel_mm": pixel, "psf_fwhm_mm": fwhm}
    return PETMap(pet, pet_spacing, matrix, params)


def pet_map_from_ct(
    hu: np.ndarray, spacing: tuple[float, ...], rng: np.random.Generator, region: str = "body", *,
    independent_slices: bool = False, pixel_mm: float | None = None, psf_fwhm_mm: float | None = None,
    min_size: int = 128,
) -> PETMap:
    """FDG-like PET map of a CT volume (HU, ``(I, J, K)``); class values, lesions, PSF and pixel drawn from ``rng``."""
    labels = ct_tissue_labels(hu, spacing, region, deep_mm=float(rng.uniform(20.0, 35.0)))
    pet = _map_from_labels(labels, spacing, rng, independent_slices, pixel_mm, psf_fwhm_mm, min_size)
    pet.params["anatomy"] = {"modality": "CT", "region": region}
    return pet


def pet_map_from_mri(
    signal: np.ndarray, spacing: tuple[float, ...], rng: np.random.Generator, contrast: str = "t2",
    skull_margin_mm: float = 0.0, *, independent_slices: bool = False, pixel_mm: float | None = None,
    psf_fwhm_mm: float | None = None, min_size: int = 128,
) -> PETMap:
    """FDG-like brain PET map of an MRI volume (``(I, J, K)``); see :func:`mri_tissue_labels`."""
    labels = mri_tissue_labels(signal, spacing, contrast, skull_margin_mm)
    pet = _map_from_labels(labels, spacing, rng, independent_slices, pixel_mm, psf_fwhm_mm, min_size)
    pet.params["anatomy"] = {"modality": "MR", "contrast": contrast}
    return pet
