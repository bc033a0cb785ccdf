"""FDG-like PET maps from CT / MRI anatomy: tissue classes, SUV ranges, lesions, PET resolution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pet_from_anatomy import (
    LABELS,
    SUV_RANGES,
    add_hot_lesions,
    ct_tissue_labels,
    draw_suv_values,
    mri_tissue_labels,
    pet_map_from_ct,
    pet_map_from_mri,
    to_pet_resolution,
)

L = {name: i for i, name in enumerate(LABELS)}


def synthetic_chest_ct(n: int = 128, slices: int = 3) -> np.ndarray:
    """(n, n, slices) HU: air, a body ellipse of muscle with a fat rim, two lungs, a spine with marrow."""
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    hu = np.full((n, n), -1000.0)
    body = (xx / (0.45 * n)) ** 2 + (yy / (0.33 * n)) ** 2 <= 1
    hu[body] = -100.0  # fat rim
    hu[(xx / (0.42 * n)) ** 2 + (yy / (0.30 * n)) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        hu[((xx - side * 0.2 * n) / (0.12 * n)) ** 2 + (yy / (0.2 * n)) ** 2 <= 1] = -850.0
    spine = xx**2 + (yy - 0.22 * n) ** 2
    hu[spine <= (0.06 * n) ** 2] = 900.0
    hu[spine <= (0.035 * n) ** 2] = 250.0
    return np.repeat(hu[:, :, None], slices, axis=2)


def synthetic_head_mri(n: int = 128, contrast: str = "t2") -> np.ndarray:
    """(n, n, 2) magnitude: scalp, dark skull, cortex (grey), white matter, a CSF ventricle."""
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    r = np.hypot(xx / 1.0, yy / 1.2)
    t2 = {"scalp": 700.0, "skull": 20.0, "grey": 900.0, "white": 600.0, "csf": 1800.0}
    t1 = {"scalp": 1500.0, "skull": 20.0, "grey": 500.0, "white": 700.0, "csf": 150.0}
    v = t2 if contrast == "t2" else t1
    image = np.zeros((n, n))
    image[r < 0.45 * n] = v["scalp"]
    image[r < 0.41 * n] = v["skull"]
    image[r < 0.37 * n] = v["grey"]
    image[r < 0.29 * n] = v["white"]
    image[np.hypot(xx, yy) < 0.07 * n] = v["csf"]
    return np.repeat(image[:, :, None], 2, axis=2)


def test_ct_classes_follow_hu_and_depth():
    n = 128
    labels = ct_tissue_labels(synthetic_chest_ct(n), (2.0, 2.0, 5.0), "body", deep_mm=30.0)[:, :, 1]
    c = n // 2  # arrays are [y, x] here
    assert labels[2, 2] == L["air"]
    assert labels[c, c + int(0.2 * n)] == L["lung"]
    assert labels[c + int(0.22 * n), c] == L["marrow"]
    assert labels[c + int(0.27 * n), c] == L["cortical_bone"]
    assert labels[c - int(0.30 * n) + 2, c] == L["muscle"]  # soft tissue just under the fat rim
    assert labels[c - int(0.1 * n), c] == L["viscera"]  # deep soft tissue between the lungs
    assert labels[c, c + int(0.43 * n)] == L["fat"]


def test_head_ct_gets_brain_classes_inside_the_skull():
    n = 128
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    r = np.hypot(xx, yy)
    hu = np.full((n, n), -1000.0)
    hu[r < 50] = 1000.0
    hu[r < 45] = 42.0  # cortex
    hu[r < 32] = 25.0  # white matter
    hu[r < 8] = 5.0  # ventricle
    labels = ct_tissue_labels(hu[:, :, None], (1.5, 1.5, 5.0), "head")[:, :, 0]
    assert labels[64, 64] == L["csf"]
    assert labels[64, 64 + 20] == L["white_matter"]
    assert labels[64, 64 + 40] == L["grey_matter"]
    assert labels[64, 64 + 48] == L["cortical_bone"]


@pytest.mark.parametrize("contrast", ["t1", "t2"])
def test_mri_classes_follow_the_contrast(contrast):
    n = 128
    labels = mri_tissue_labels(synthetic_head_mri(n, contrast), (1.5, 1.5, 5.0), contrast)[:, :, 0]
    c = n // 2  # along x (axis 1): white matter < 37 px < cortex < 47 < skull < 52 < scalp < 57
    assert labels[c, c] == L["csf"]  # ventricle (bright in T2, dark in T1)
    assert labels[c, c + 25] == L["white_matter"]
    assert labels[c, c + 42] == L["grey_matter"]
    assert labels[c, c + 50] == L["cortical_bone"]  # dark skull outside the brain
    assert labels[c, c + 55] == L["muscle"]  # scalp
    assert labels[0, 0] == L["air"]


def test_suv_values_lie_in_their_ranges():
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = draw_suv_values(rng)
        for name, (lo, hi) in SUV_RANGES.items():
            assert lo <= values[name] <= hi
    assert SUV_RANGES["grey_matter"][0] > 2 * SUV_RANGES["white_matter"][0]  # FDG grey / white contrast


def test_lesions_are_painted_inside_the_body():
    rng = np.random.default_rng(1)
    labels = ct_tissue_labels(synthetic_chest_ct(64, 4), (4.0, 4.0, 4.0))
    suv = np.ones(labels.shape, dtype=np.float32)
    lesions = add_hot_lesions(suv, labels, (4.0, 4.0, 4.0), rng, count=3)
    assert len(lesions) == 3
    for lesion in lesions:
        assert labels[tuple(lesion["centre_index"])] != L["air"]
        assert suv[tuple(lesion["centre_index"])] == pytest.approx(lesion["suv"])
        assert 4.0 <= lesion["suv"] <= 15.0 and 5.0 <= lesion["diameter_mm"] <= 20.0


def test_pet_resolution_blurs_resamples_pads_and_keeps_geometry():
    suv = np.zeros((100, 80, 6), dtype=np.float32)
    suv[40:60, 30:50, :] = 5.0
    out, spacing, matrix = to_pet_resolution(suv, (1.0, 1.0, 3.0), pixel_mm=4.0, psf_fwhm_mm=5.0, min_size=64)
    # in-plane to 4 mm and padded to 64; 3 mm slices are finer than 4 mm: 6 x 3 mm -> 4 x 4.5 mm
    assert out.shape == (64, 64, 4) and spacing == pytest.approx((4.0, 4.0, 4.5))
    # total activity (SUV x volume) kept by blur and resampling
    assert float(out.sum()) * float(np.prod(spacing)) == pytest.approx(float(suv.sum()) * 3, rel=0.03)
    assert float(out.max()) < 5.0  # the PSF spreads the edges
    centre = ndimage.center_of_mass(out[:, :, 0])  # map index -> source index: the block stays in place
    assert (matrix @ np.array([*centre, 0.0, 1.0]))[:2] == pytest.approx([49.5, 39.5], abs=1.0)


def test_pet_maps_from_ct_and_mri_are_fdg_like():
    rng = np.random.default_rng(2)
    ct_map = pet_map_from_ct(synthetic_chest_ct(128, 4), (2.5, 2.5, 5.0), rng, min_size=96)
    assert min(ct_map.suv.shape[:2]) >= 96 and 2.0 <= ct_map.spacing[0] <= 4.0  # 320 mm at 2-4 mm pixels
    assert float(ct_map.suv.min()) >= 0.0 and float(ct_map.suv[0, 0].max()) == 0.0  # air stays 0
    assert 4.0 <= ct_map.params["psf_fwhm_mm"] <= 6.0 and ct_map.params["lesions"]
    mr = synthetic_head_mri(128, "t2")
    mr_map = pet_map_from_mri(mr, (1.5, 1.5, 5.0), rng, "t2", independent_slices=True, pixel_mm=3.0)
    values = mr_map.params["suv_values"]
    # the cortex is hotter than the white matter at the centre (away from lesions: compare the class values)
    assert values["grey_matter"] > 2 * values["white_matter"]
    assert mr_map.suv.shape[2] == 2 and mr_map.spacing[2] == pytest.approx(5.0)
