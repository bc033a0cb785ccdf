"""Phantoms and demo samples: seeded, in physical ranges, anatomically layered."""

from __future__ import annotations

import numpy as np
import pytest

from monai_tat.demo.phantoms import REGIONS, TISSUES, draw_anatomy, label_map, phantom_slice, phantom_volume
from monai_tat.demo.samples import make_sample


@pytest.mark.parametrize("modality", ["ct", "pet", "mri"])
def test_slice_is_seeded_and_in_range(modality):
    a = phantom_slice(np.random.default_rng(7), modality, (64, 64))
    b = phantom_slice(np.random.default_rng(7), modality, (64, 64))
    c = phantom_slice(np.random.default_rng(8), modality, (64, 64))
    assert a.shape == (64, 64) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    low, high = {"ct": (-1024, 3071), "pet": (0, 60), "mri": (0, 4095)}[modality]
    assert a.min() >= low and a.max() <= high
    assert a.std() > 0


@pytest.mark.parametrize("region", REGIONS)
def test_every_region_has_body_and_air(region):
    anat = draw_anatomy(np.random.default_rng(1), region)
    labels = label_map(anat, (96, 96))
    names = set(np.array(list(TISSUES))[np.unique(labels)])
    assert "air" in names and len(names) >= 5
    if region == "thorax":
        assert "lung" in names
    if region == "head":
        assert {"grey_matter", "white_matter", "csf"} <= names


def test_ct_tissue_values_are_realistic():
    rng = np.random.default_rng(3)
    anat = draw_anatomy(rng, "thorax")
    labels = label_map(anat, (128, 128))
    ct = phantom_volume(np.random.default_rng(3), "ct", (64, 64, 3), region="thorax")
    assert ct.shape == (64, 64, 3)
    names = np.array(list(TISSUES))[labels]
    assert anat.values["ct"]["lung"] < -700 and anat.values["ct"]["cortical_bone"] > 800
    assert (names == "lung").sum() > 0 and ct.min() < -700


def test_demo_sample_is_degraded_and_has_geometry():
    sample = make_sample("ct", size=64, slices=2, seed=1)
    assert sample.reference.shape == sample.low_quality.shape == (64, 64, 2)
    assert sample.reference.meta["modality"] == "CT"
    assert float(sample.low_quality.affine[2, 2]) > 0
    assert float((sample.low_quality - sample.reference).abs().mean()) > 1.0  # noise was added
