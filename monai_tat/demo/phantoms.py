"""Procedural anatomical phantoms: CT (HU), PET (SUV) and T2-like MRI (0-4095) slices and volumes.

A phantom is a list of soft-edged, irregular ellipsoids (body outline, subcutaneous fat, organs,
bones, lungs, vessels, bowel, lesions), each with a tissue label; drawing later shapes over earlier
ones builds the anatomy of one body region ("head", "thorax", "abdomen", "pelvis"). The same
anatomy renders to any modality through a per-tissue contrast table (values drawn per phantom
within physiological ranges) plus smooth random texture, a scanner-like blur and, for MRI, a
smooth bias field. Everything is seeded: ``phantom_slice(rng)`` with the same generator state
gives the same image.

These are training and demonstration data, not a validated simulation of human anatomy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = [
    "MODALITIES",
    "REGIONS",
    "TISSUES",
    "Anatomy",
    "draw_anatomy",
    "label_map",
    "render",
    "phantom_slice",
    "phantom_volume",
]

#: Modalities a phantom renders to (task names of the package).
MODALITIES = ("ct", "pet", "mri")
#: Body regions the generator knows.
REGIONS = ("head", "thorax", "abdomen", "pelvis")

# Tissue -> (HU range, SUV range, T2 MR range (0-4095 scale), texture strength in [0, 1]).
# Each phantom draws its own value inside every range, so contrast varies between phantoms.
TISSUES: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float], float]] = {
    "air": ((-1000, -1000), (0.0, 0.0), (0, 0), 0.0),
    "fat": ((-120, -80), (0.2, 0.5), (1500, 2600), 0.3),
    "muscle": ((35, 60), (0.5, 1.1), (350, 650), 0.5),
    "skin": ((20, 60), (0.6, 1.2), (700, 1100), 0.3),
    "lung": ((-900, -780), (0.2, 0.6), (40, 160), 1.0),
    "blood": ((35, 60), (1.4, 2.4), (80, 300), 0.2),  # T2 flow void
    "contrast_blood": ((150, 320), (1.4, 2.4), (80, 300), 0.2),
    "heart": ((35, 55), (1.5, 9.0), (500, 800), 0.4),
    "liver": ((50, 75), (1.8, 3.0), (450, 700), 0.6),
    "spleen": ((40, 60), (1.5, 2.6), (900, 1300), 0.5),
    "kidney": ((25, 45), (2.5, 6.0), (1100, 1600), 0.5),
    "urine": ((0, 20), (8.0, 40.0), (3200, 3900), 0.1),
    "bowel_wall": ((30, 60), (1.2, 3.5), (700, 1200), 0.6),
    "bowel_gas": ((-1000, -850), (0.0, 0.2), (30, 120), 0.3),
    "bowel_fluid": ((5, 30), (0.8, 2.0), (2500, 3500), 0.4),
    "cortical_bone": ((900, 1600), (0.3, 0.8), (30, 120), 0.3),
    "marrow": ((180, 350), (1.0, 2.0), (1200, 2000), 1.0),
    "cartilage": ((80, 130), (0.5, 1.0), (900, 1400), 0.3),
    "csf": ((0, 15), (0.2, 0.5), (3000, 3900), 0.1),
    "grey_matter": ((35, 45), (6.0, 11.0), (1300, 1700), 0.4),
    "white_matter": ((22, 32), (2.0, 4.0), (800, 1100), 0.4),
    "lesion_hot": ((20, 70), (4.0, 16.0), (1600, 2800), 0.6),
    "lesion_cold": ((-10, 30), (0.3, 1.0), (1800, 3200), 0.4),
    "pancreas": ((35, 55), (1.2, 2.2), (600, 900), 0.6),
    "table": ((-300, 300), (0.0, 0.0), (0, 0), 0.0),
}
_NAMES = tuple(TISSUES)
_INDEX = {name: i for i, name in enumerate(_NAMES)}


@dataclass
class Shape:
    """One soft ellipsoid: centre (x, y, z) and semi-axes in normalised units ([-1, 1] across the
    field of view in-plane, z in units of the volume's half height), in-plane rotation, boundary
    wobble harmonics, and an optional hollow part (a shell of relative thickness ``shell``)."""

    tissue: str
    cx: float
    cy: float
    ax: float
    ay: float
    angle: float = 0.0
    cz: float = 0.0
    az: float = 3.0
    wobble: tuple[tuple[float, float, int], ...] = ()
    shell: float = 0.0


@dataclass
class Anatomy:
    """The shapes of one phantom in drawing order, its region, and its per-tissue values."""

    region: str
    shapes: list[Shape] = field(default_factory=list)
    values: dict[str, dict[str, float]] = field(default_factory=dict)  # modality -> tissue -> value
    flip: bool = False
    rotation: float = 0.0
    table: bool = False

    def add(self, tissue: str, cx: float, cy: float, ax: float, ay: float, rng: np.random.Generator,
            angle: float = 0.0, wobble: float = 0.0, max_order: int = 5, **kwargs: float) -> Shape:
        """Append a shape with random boundary harmonics (orders 2..``max_order``) of relative size ``wobble``."""
        harmonics = tuple(
            (float(rng.normal(0, wobble / math.sqrt(k))), float(rng.uniform(0, 2 * math.pi)), k)
            for k in range(2, max_order + 1)
        ) if wobble > 0 else ()
        shape = Shape(tissue, cx, cy, ax, ay, angle, wobble=harmonics, **kwargs)
        self.shapes.append(shape)
        return shape


# -- anatomy ----------------------------------------------------------------------------------


def _body(anat: Anatomy, rng: np.random.Generator, ax: float, ay: float) -> tuple[float, float, float]:
    """Skin, subcutaneous fat and the muscle/soft-tissue interior; returns the interior's axes and centre y."""
    cy = rng.uniform(-0.05, 0.05)
    wob = rng.uniform(0.01, 0.04)
    anat.add("skin", 0.0, cy, ax, ay, rng, wobble=wob, az=50)
    fat_t = rng.uniform(0.015, 0.12)  # subcutaneous fat thickness (normalised units)
    anat.add("fat", 0.0, cy, ax - 0.012, ay - 0.012, rng, wobble=wob, az=50)
    iax, iay = ax - 0.012 - fat_t, ay - 0.012 - fat_t * rng.uniform(0.6, 1.2)
    anat.add("muscle", 0.0, cy, iax, iay, rng, wobble=wob, az=50)
    return iax, iay, cy


def _spine(anat: Anatomy, rng: np.random.Generator, cy: float, iay: float, scale: float) -> None:
    y = cy + iay * rng.uniform(0.55, 0.75)
    r = 0.09 * scale
    anat.add("cortical_bone", 0.0, y, r, r * 0.85, rng, wobble=0.03)
    anat.add("marrow", 0.0, y, r * 0.8, r * 0.68, rng, wobble=0.03)
    anat.add("cortical_bone", 0.0, y + r * 1.6, r * 0.55, r * 0.5, rng, shell=0.35)
    anat.add("csf", 0.0, y + r * 1.6, r * 0.33, r * 0.3, rng)


def _head(anat: Anatomy, rng: np.random.Generator) -> None:
    ax, ay = rng.uniform(0.62, 0.82), rng.uniform(0.72, 0.9)
    cy = rng.uniform(-0.05, 0.05)
    anat.add("skin", 0.0, cy, ax, ay, rng, wobble=0.015, az=50)
    anat.add("fat", 0.0, cy, ax - 0.02, ay - 0.02, rng, wobble=0.015, az=50)
    s = rng.uniform(0.04, 0.07)
    anat.add("cortical_bone", 0.0, cy, ax - 0.04, ay - 0.04, rng, wobble=0.015, az=50)
    anat.add("marrow", 0.0, cy, ax - 0.04 - s * 0.4, ay - 0.04 - s * 0.4, rng, wobble=0.015, az=50, shell=0.03)
    bx, by = ax - 0.04 - s, ay - 0.04 - s
    anat.add("csf", 0.0, cy, bx, by, rng, wobble=0.02, az=50)
    anat.add("grey_matter", 0.0, cy, bx - 0.02, by - 0.02, rng, wobble=0.04, az=50)
    gm = rng.uniform(0.05, 0.1)
    anat.add("white_matter", 0.0, cy, bx - 0.02 - gm, by - 0.02 - gm, rng, wobble=0.05, max_order=24, az=50)
    # sulci: thin CSF clefts reaching into the cortex
    for _ in range(rng.integers(6, 16)):
        t = rng.uniform(0, 2 * math.pi)
        rr = rng.uniform(0.8, 0.95)
        anat.add("csf", rr * bx * math.cos(t), cy + rr * by * math.sin(t), 0.012, rng.uniform(0.04, 0.09), rng,
                 angle=t + math.pi / 2 + math.pi / 2)
    # deep grey nuclei and ventricles
    for side in (-1, 1):
        anat.add("grey_matter", side * bx * 0.28, cy + rng.uniform(-0.05, 0.1), 0.07, 0.11, rng, wobble=0.05)
        anat.add("csf", side * bx * rng.uniform(0.08, 0.14), cy + rng.uniform(-0.15, 0.0),
                 rng.uniform(0.03, 0.06), rng.uniform(0.15, 0.28), rng, angle=side * rng.uniform(0.1, 0.35),
                 wobble=0.05)
    for _ in range(rng.integers(0, 3)):
        t, rr = rng.uniform(0, 2 * math.pi), rng.uniform(0.1, 0.6)
        tissue = "lesion_hot" if rng.random() < 0.5 else "lesion_cold"
        r = rng.uniform(0.02, 0.07)
        anat.add(tissue, rr * bx * math.cos(t), cy + rr * by * math.sin(t), r, r * rng.uniform(0.7, 1.3), rng, wobble=0.1)


def _thorax(anat: Anatomy, rng: np.random.Generator) -> None:
    iax, iay, cy = _body(anat, rng, rng.uniform(0.78, 0.95), rng.uniform(0.5, 0.68))
    n_ribs = int(rng.integers(4, 8))
    for k in range(n_ribs):  # ribs along the inner chest wall, sparing the front and the back
        t = 0.5 + 2.1 * k / max(n_ribs - 1, 1) + rng.uniform(-0.08, 0.08)
        for side in (-1, 1):
            x, y = side * iax * 0.95 * math.sin(t), cy - iay * 0.95 * math.cos(t)
            anat.add("cortical_bone", x, y, 0.035, 0.02, rng, angle=-side * t)
    for side in (-1, 1):
        anat.add("lung", side * iax * 0.48, cy - iay * 0.02, iax * rng.uniform(0.36, 0.45),
                 iay * rng.uniform(0.72, 0.86), rng, wobble=0.05)
        for _ in range(rng.integers(8, 20)):  # pulmonary vessels
            x = side * iax * 0.48 + rng.normal(0, iax * 0.15)
            y = cy + rng.normal(0, iay * 0.3)
            r = rng.uniform(0.006, 0.02)
            anat.add("blood", x, y, r, r * rng.uniform(0.8, 2.5), rng, angle=rng.uniform(0, math.pi))
    anat.add("fat", 0.0, cy - iay * 0.05, iax * 0.22, iay * 0.45, rng, wobble=0.05)  # mediastinum
    hx = rng.uniform(0.0, 0.12)
    anat.add("heart", hx, cy - iay * 0.12, iax * rng.uniform(0.22, 0.32), iay * rng.uniform(0.35, 0.5), rng,
             angle=rng.uniform(-0.6, -0.2), wobble=0.04)
    anat.add("contrast_blood" if rng.random() < 0.5 else "blood", hx + 0.03, cy - iay * 0.12, iax * 0.12, iay * 0.2,
             rng, wobble=0.05)
    anat.add("contrast_blood" if rng.random() < 0.5 else "blood", -0.04, cy + iay * 0.4, 0.045, 0.045, rng)  # aorta
    _spine(anat, rng, cy, iay, rng.uniform(0.9, 1.2))
    for _ in range(rng.integers(0, 3)):  # nodules
        side = rng.choice((-1, 1))
        r = rng.uniform(0.01, 0.04)
        anat.add("lesion_hot", side * iax * 0.5 + rng.normal(0, 0.08), cy + rng.normal(0, 0.15), r, r, rng, wobble=0.1)


def _abdomen(anat: Anatomy, rng: np.random.Generator) -> None:
    iax, iay, cy = _body(anat, rng, rng.uniform(0.75, 0.95), rng.uniform(0.5, 0.7))
    anat.add("fat", 0.0, cy, iax * 0.85, iay * 0.8, rng, wobble=0.08)  # visceral fat
    anat.add("liver", -iax * rng.uniform(0.3, 0.45), cy - iay * 0.1, iax * rng.uniform(0.4, 0.55),
             iay * rng.uniform(0.55, 0.75), rng, angle=rng.uniform(-0.3, 0.3), wobble=0.08)
    anat.add("spleen", iax * 0.6, cy + iay * 0.25, iax * 0.18, iay * 0.3, rng, angle=rng.uniform(-0.6, 0.0),
             wobble=0.08)
    for side in (-1, 1):
        kx, ky = side * iax * rng.uniform(0.38, 0.5), cy + iay * 0.45
        anat.add("kidney", kx, ky, iax * 0.11, iay * 0.2, rng, angle=side * 0.3, wobble=0.05)
        anat.add("urine" if rng.random() < 0.3 else "fat", kx - side * 0.03, ky, iax * 0.04, iay * 0.07, rng)
    anat.add("pancreas", 0.05, cy + iay * 0.1, iax * 0.3, iay * 0.07, rng, angle=rng.uniform(-0.3, 0.3), wobble=0.1)
    for _ in range(rng.integers(4, 12)):  # bowel loops
        x, y = rng.uniform(-0.1, 0.7) * iax, cy + rng.uniform(-0.7, 0.2) * iay
        r = rng.uniform(0.04, 0.1)
        anat.add("bowel_wall", x, y, r, r * rng.uniform(0.6, 1.2), rng, angle=rng.uniform(0, math.pi), wobble=0.1)
        content = rng.choice(("bowel_gas", "bowel_fluid", "bowel_wall"))
        anat.add(str(content), x, y, r * 0.75, r * 0.6, rng, angle=rng.uniform(0, math.pi), wobble=0.15)
    anat.add("contrast_blood" if rng.random() < 0.5 else "blood", -0.03, cy + iay * 0.42, 0.035, 0.035, rng)
    anat.add("blood", -0.14, cy + iay * 0.35, 0.04, 0.03, rng)  # IVC
    for side in (-1, 1):  # psoas
        anat.add("muscle", side * 0.16, cy + iay * 0.6, 0.07, 0.09, rng, wobble=0.05)
    _spine(anat, rng, cy, iay, rng.uniform(1.0, 1.3))
    for _ in range(rng.integers(0, 4)):  # liver lesions
        r = rng.uniform(0.015, 0.06)
        tissue = "lesion_hot" if rng.random() < 0.5 else "lesion_cold"
        anat.add(tissue, -iax * 0.38 + rng.normal(0, 0.1), cy + rng.normal(-0.1, 0.12), r, r, rng, wobble=0.1)


def _pelvis(anat: Anatomy, rng: np.random.Generator) -> None:
    iax, iay, cy = _body(anat, rng, rng.uniform(0.8, 0.97), rng.uniform(0.5, 0.68))
    anat.add("fat", 0.0, cy, iax * 0.8, iay * 0.75, rng, wobble=0.06)
    for side in (-1, 1):
        x = side * iax * rng.uniform(0.55, 0.7)
        anat.add("muscle", x, cy, iax * 0.3, iay * 0.5, rng, wobble=0.06)
        anat.add("cortical_bone", x, cy + rng.uniform(-0.05, 0.1), 0.13, 0.13, rng, wobble=0.04)
        anat.add("marrow", x, cy + 0.03, 0.1, 0.1, rng, wobble=0.05)
        anat.add("cartilage", x - side * 0.08, cy + 0.03, 0.02, 0.08, rng)
        anat.add("blood", side * iax * 0.35, cy - iay * 0.35, 0.03, 0.03, rng)
    r = rng.uniform(0.08, 0.22)
    anat.add("muscle", 0.0, cy - iay * 0.2, r + 0.015, r * 0.8 + 0.015, rng, wobble=0.05)  # bladder wall
    anat.add("urine", 0.0, cy - iay * 0.2, r, r * 0.8, rng, wobble=0.05)
    anat.add("bowel_wall", 0.0, cy + iay * 0.45, 0.07, 0.06, rng, wobble=0.1)
    anat.add(str(rng.choice(("bowel_gas", "bowel_fluid"))), 0.0, cy + iay * 0.45, 0.045, 0.035, rng, wobble=0.1)
    anat.add("cortical_bone", 0.0, cy + iay * 0.8, 0.15, 0.07, rng, wobble=0.05)  # sacrum
    anat.add("marrow", 0.0, cy + iay * 0.8, 0.12, 0.05, rng, wobble=0.05)


_BUILDERS = {"head": _head, "thorax": _thorax, "abdomen": _abdomen, "pelvis": _pelvis}


def draw_anatomy(rng: np.random.Generator, region: str | None = None) -> Anatomy:
    """Random anatomy of ``region`` (random region when None), with per-tissue values for every modality."""
    region = region or str(rng.choice(REGIONS))
    if region not in _BUILDERS:
        raise ValueError(f"unknown region {region!r}; use one of {REGIONS}")
    anat = Anatomy(region, flip=bool(rng.random() < 0.5), rotation=float(rng.normal(0, 0.08)),
                   table=region != "head" and bool(rng.random() < 0.6))
    _BUILDERS[region](anat, rng)
    for z_shape in anat.shapes:  # organs end at different heights: varied slices in 3D
        if z_shape.az < 50:
            z_shape.cz = float(rng.normal(0, 0.4))
            z_shape.az = float(rng.uniform(0.8, 3.0))
    for m, modality in enumerate(MODALITIES):
        anat.values[modality] = {name: float(rng.uniform(*TISSUES[name][m])) for name in _NAMES}
    anat.values["texture"] = {name: TISSUES[name][3] for name in _NAMES}
    return anat


# -- rasterising ------------------------------------------------------------------------------


def _coordinates(shape: tuple[int, int], anat: Anatomy) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    half = max(h, w) / 2.0
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (x - (w - 1) / 2) / half, (y - (h - 1) / 2) / half
    if anat.flip:
        x = -x
    c, s = math.cos(anat.rotation), math.sin(anat.rotation)
    return c * x + s * y, -s * x + c * y


def label_map(anat: Anatomy, shape: tuple[int, int], z: float = 0.0) -> np.ndarray:
    """Tissue index per pixel (indices into :data:`TISSUES`) of the axial slice at height ``z``."""
    xx, yy = _coordinates(shape, anat)
    labels = np.full(shape, _INDEX["air"], dtype=np.int16)
    if anat.table:  # the patient table below the back (CT)
        body = anat.shapes[0]
        top = body.cy + body.ay + 0.04
        labels[(yy > top) & (yy < top + 0.04) & (np.abs(xx) < 0.9)] = _INDEX["table"]
    for sh in anat.shapes:
        dz = (z - sh.cz) / sh.az
        if abs(dz) >= 1.0:
            continue
        shrink = math.sqrt(1.0 - dz * dz)
        c, s = math.cos(sh.angle), math.sin(sh.angle)
        u, v = xx - sh.cx, yy - sh.cy
        pu, pv = (c * u + s * v) / (sh.ax * shrink), (-s * u + c * v) / (sh.ay * shrink)
        rho = np.hypot(pu, pv)
        limit = 1.0
        if sh.wobble:
            theta = np.arctan2(pv, pu)
            limit = 1.0 + sum(a * np.cos(k * theta + p) for a, p, k in sh.wobble)
        inside = rho < limit
        if sh.shell > 0:
            inside &= rho > limit * (1.0 - sh.shell / max(sh.ax, sh.ay))
        labels[inside] = _INDEX[sh.tissue]
    return labels


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian random field with unit standard deviation and correlation length ``sigma`` pixels."""
    field_ = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field_ / (field_.std() + 1e-12)


def render(
    labels: np.ndarray, anat: Anatomy, modality: str, rng: np.random.Generator, pixel_mm: float = 1.0
) -> np.ndarray:
    """Image of a label map (2D or 3D, last axis = slices) in physical units of ``modality``.

    CT: HU with tissue texture and a 0.5-0.9 pixel blur. PET: SUV with multiplicative texture and a
    resolution blur of about 5-7 mm FWHM. MRI: T2-like signal on a 0-4095 scale with texture, a
    smooth bias field, blur and a small Rician-like noise floor.
    """
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; use one of {MODALITIES}")
    values = np.array([anat.values[modality][n] for n in _NAMES])
    texture = np.array([anat.values["texture"][n] for n in _NAMES])
    base = values[labels]
    tex = texture[labels]
    fine = _smooth_noise(rng, labels.shape, rng.uniform(1.0, 2.5))
    coarse = _smooth_noise(rng, labels.shape, rng.uniform(4.0, 10.0))
    blob = 0.6 * fine + 0.8 * coarse
    in_plane = (rng.uniform(0.5, 0.9),) * 2 + ((0.3,) if labels.ndim == 3 else ())
    if modality == "ct":
        amp = rng.uniform(8.0, 20.0)
        image = base + tex * amp * blob * np.where(base > 150, 4.0, 1.0) * np.where(base < -500, 3.0, 1.0)
        image = gaussian_filter(image, in_plane)
        return np.clip(image, -1024.0, 3071.0).astype(np.float32)
    if modality == "pet":
        image = base * (1.0 + tex * rng.uniform(0.08, 0.2) * blob)
        fwhm_px = rng.uniform(5.0, 7.0) / pixel_mm
        sig = (fwhm_px / 2.355,) * 2 + ((fwhm_px / 2.355 / 2,) if labels.ndim == 3 else ())
        return np.clip(gaussian_filter(image, sig), 0.0, None).astype(np.float32)
    image = base * (1.0 + tex * rng.uniform(0.04, 0.12) * blob)
    bias = np.exp(rng.uniform(0.05, 0.25) * _smooth_noise(rng, labels.shape, max(labels.shape[:2]) / 4))
    image = gaussian_filter(image * bias, in_plane) * rng.uniform(0.55, 1.0)
    noise = rng.uniform(0.002, 0.012) * 4095
    image = np.hypot(image + noise * rng.standard_normal(image.shape), noise * rng.standard_normal(image.shape))
    return np.clip(image, 0.0, 4095.0).astype(np.float32)


# -- convenience ------------------------------------------------------------------------------


def _default_region(modality: str, rng: np.random.Generator) -> str:
    if modality == "mri":  # the papers' MRI task is brain T2; keep some body MRI for generality
        return "head" if rng.random() < 0.65 else str(rng.choice(REGIONS[1:]))
    if modality == "pet":
        return str(rng.choice(REGIONS, p=(0.15, 0.3, 0.35, 0.2)))
    return str(rng.choice(REGIONS, p=(0.1, 0.3, 0.4, 0.2)))


def phantom_slice(
    rng: np.random.Generator, modality: str, size: tuple[int, int] = (256, 256), region: str | None = None,
    pixel_mm: float = 1.0,
) -> np.ndarray:
    """One random ``(H, W)`` axial slice in physical units of ``modality`` (HU, SUV or 0-4095 MR)."""
    anat = draw_anatomy(rng, region or _default_region(modality, rng))
    labels = label_map(anat, size, z=float(rng.uniform(-0.6, 0.6)))
    return render(labels, anat, modality, rng, pixel_mm)


def phantom_volume(
    rng: np.random.Generator, modality: str, shape: tuple[int, int, int] = (128, 128, 16),
    region: str | None = None, pixel_mm: float = 1.0, z_extent: float = 0.6,
) -> np.ndarray:
    """A ``(H, W, D)`` volume (slices along the last axis) of one phantom in physical units."""
    anat = draw_anatomy(rng, region or _default_region(modality, rng))
    zs = np.linspace(-z_extent, z_extent, shape[2]) if shape[2] > 1 else np.zeros(1)
    labels = np.stack([label_map(anat, shape[:2], float(z)) for z in zs], axis=-1)
    return render(labels, anat, modality, rng, pixel_mm)
