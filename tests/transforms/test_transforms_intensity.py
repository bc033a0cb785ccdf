"""Invertible intensity transforms: round trips, property tests, windows, metadata, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.transforms import (
    CT_WINDOWS,
    TASKS,
    HUWindow,
    HUWindowd,
    MRINormalize,
    MRINormalized,
    SUVNormalize,
    SUVNormalized,
    model_intensity_transform,
)
from monai_tat.transforms.model_mapping import (
    MIN_SPREAD,
    ModelBounds,
)

SHAPES = array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)
PROPERTY = settings(max_examples=40, deadline=None)


def _values(lower: float, upper: float, dtype=np.float32):
    return arrays(dtype, SHAPES, elements=st.floats(lower, upper, width=32, allow_nan=False))


def _assert_round_trip(original: np.ndarray, restored: torch.Tensor, width: float) -> None:
    """Within 1e-5 relative: of the value and of the window width (float32 rounding near 0)."""
    got = restored.detach().cpu().numpy().astype(np.float64)
    want = original.astype(np.float64)
    assert got.shape == want.shape
    assert np.all(np.abs(got - want) <= 1e-5 * (np.abs(want) + width))


@PROPERTY
@given(_values(-1024.0, 3072.0))
def test_hu_model_window_round_trip_and_range(x):
    t = HUWindow()
    y = t(x)
    assert isinstance(y, MetaTensor)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    _assert_round_trip(x, t.inverse(y), 4096.0)


@PROPERTY
@given(_values(0.0, 20.0))
def test_suv_round_trip_and_range(x):
    t = SUVNormalize()
    y = t(x)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    _assert_round_trip(x, t.inverse(y), 20.0)


@PROPERTY
@given(_values(0.0, 4095.0))
def test_mri_fixed_round_trip_and_range(x):
    t = MRINormalize(mode="fixed")
    y = t(x)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    _assert_round_trip(x, t.inverse(y), 4095.0)


@PROPERTY
@given(_values(-1e4, 1e4))
def test_mri_percentile_is_exactly_invertible_for_any_values(x):
    t = MRINormalize()  # percentile (0.5, 99.5), no clipping
    y = t(x)
    info = y.applied_operations[-1]["extra_info"]
    width = info["upper"] - info["lower"]
    assert width > 0
    _assert_round_trip(x, MRINormalize().inverse(y), max(width, float(np.ptp(x))))


@PROPERTY
@given(_values(-3000.0, 5000.0), st.sampled_from(TASKS))
def test_model_factory_without_clip_inverts_every_value(x, task):
    if task == "pet":
        x = np.abs(x) / 100.0
    t = model_intensity_transform(task)
    y = t(x)
    bounds = ModelBounds.from_record(y.applied_operations[-1]["extra_info"])
    width = max(float(np.max(bounds.upper - bounds.lower)), float(np.ptp(x)))
    _assert_round_trip(x, model_intensity_transform(task).inverse(y), width)


def test_mri_percentiles_travel_in_metadata():
    x = np.random.default_rng(0).gamma(2.0, 300.0, size=(1, 16, 16, 4)).astype(np.float32)
    y = MRINormalize(percentiles=(0.5, 99.5))(x)
    info = y.applied_operations[-1]["extra_info"]
    lo, hi = np.percentile(x.astype(np.float64), (0.5, 99.5))
    assert info["lower"] == pytest.approx(lo) and info["upper"] == pytest.approx(hi)
    assert float(torch.quantile(y.flatten().double(), 0.995)) == pytest.approx(1.0, abs=1e-3)
    assert float(y.max()) > 1.0  # not clipped: the brightest 0.5 % lie above 1


def test_constant_mri_image_is_shifted_not_divided_by_zero():
    x = np.full((1, 4, 4), 7.0, dtype=np.float32)
    t = MRINormalize()
    y = t(x)
    assert torch.all(y == 0)
    np.testing.assert_allclose(t.inverse(y).numpy(), x)


@pytest.mark.parametrize(
    "name, bounds",
    [
        ("abdomen", (-160, 240)),
        ("lung", (-1350, 150)),
        ("brain", (0, 80)),
        ("bone", (-500, 1300)),
        ("model", (-1024, 3072)),
    ],
)
def test_named_windows_are_width_level_pairs(name, bounds):
    assert CT_WINDOWS[name] == bounds
    t = HUWindow(name)
    out = t(np.array([bounds[0], (bounds[0] + bounds[1]) / 2, bounds[1]], dtype=np.float32))
    np.testing.assert_allclose(out.numpy(), [0.0, 0.5, 1.0], atol=1e-6)


def test_width_level_and_explicit_bounds_agree():
    x = np.linspace(-500, 500, 11, dtype=np.float32)
    a = HUWindow(width=400, level=40)(x)
    b = HUWindow((-160, 240))(x)
    c = HUWindow("abdomen")(x)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(a.numpy(), c.numpy())


def test_clipping_maps_outside_values_to_the_window_bounds():
    x = np.array([-1000.0, 0.0, 1000.0], dtype=np.float32)
    t = HUWindow("abdomen", clip=True)
    y = t(x)
    np.testing.assert_allclose(y.numpy(), [0.0, 0.4, 1.0], atol=1e-6)
    np.testing.assert_allclose(t.inverse(y).numpy(), [-160.0, 0.0, 240.0], atol=1e-4)
    unclipped = HUWindow("abdomen", clip=False)
    np.testing.assert_allclose(unclipped.inverse(unclipped(x)).numpy(), x, atol=1e-3)


def test_input_is_not_modified_and_keeps_its_metadata():
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))
    x = MetaTensor(torch.linspace(-1024, 3072, 16).reshape(1, 4, 4), affine=affine)
    before = x.clone()
    y = HUWindow()(x)
    assert torch.equal(x.as_tensor(), before.as_tensor()) and len(x.applied_operations) == 0
    assert torch.equal(y.affine, x.affine)


def test_inverse_uses_the_recorded_bounds_not_the_instance():
    y = MRINormalize(mode="fixed", value_range=(100.0, 200.0))(np.array([150.0], dtype=np.float32))
    restored = MRINormalize(mode="fixed").inverse(y)  # default range [0, 4095], but the record wins
    assert float(restored[0]) == pytest.approx(150.0)


def test_network_output_with_copied_metadata_can_be_inverted():
    x = np.array([[[0.0, 10.0], [20.0, 5.0]]], dtype=np.float32)
    t = model_intensity_transform("pet")
    y = t(x)
    output = MetaTensor(y.as_tensor() * 0.5, meta=y.meta, applied_operations=y.applied_operations)
    np.testing.assert_allclose(t.inverse(output).numpy(), x * 0.5, atol=1e-5)


def test_inverse_without_record_is_a_clear_error():
    with pytest.raises(UserInputError, match="applied_operations"):
        HUWindow().inverse(MetaTensor(torch.zeros(1, 2, 2)))
    y = SUVNormalize()(np.zeros((1, 2, 2), dtype=np.float32))
    with pytest.raises(UserInputError, match="SUVNormalize"):
        HUWindow().inverse(y)


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite")])
@pytest.mark.parametrize("make", [HUWindow, SUVNormalize, MRINormalize])
def test_nan_and_inf_raise_naming_the_problem(make, bad, word):
    x = np.ones((1, 3, 3), dtype=np.float32)
    x[0, 1, 1] = bad
    with pytest.raises(UserInputError, match=word):
        make()(x)


def test_integer_input_becomes_float32_and_float64_stays():
    assert HUWindow()(np.array([0, 100], dtype=np.int16)).dtype == torch.float32
    assert HUWindow()(np.array([0.0, 100.0], dtype=np.float64)).dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs",
    [{"window": "liver"}, {"window": (10, 5)}, {"width": 400}, {"window": "lung", "width": 400, "level": 40}],
)
def test_bad_window_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        HUWindow(**kwargs)


def test_bad_mri_and_suv_arguments_are_user_errors():
    with pytest.raises(UserInputError):
        MRINormalize(mode="zscore")
    with pytest.raises(UserInputError):
        MRINormalize(percentiles=(99.5, 0.5))
    with pytest.raises(UserInputError):
        SUVNormalize((20.0, 0.0))


def test_dictionary_versions_round_trip_each_key():
    rng = np.random.default_rng(1)
    data = {
        "image": rng.uniform(-1024, 3072, (1, 5, 5)).astype(np.float32),
        "label": rng.uniform(-1024, 3072, (1, 5, 5)).astype(np.float32),
    }
    for t, width in [
        (HUWindowd(["image", "label"]), 4096.0),
        (SUVNormalized(["image", "label"], clip=False), 4096.0),
        (MRINormalized(["image", "label"]), 4096.0),
    ]:
        out = t(data)
        assert set(out) == {"image", "label"}
        back = t.inverse(out)
        for key in ("image", "label"):
            _assert_round_trip(data[key], back[key], width)


def test_factory_builds_the_papers_model_ranges():
    assert TASKS == ("ct", "pet", "mri")
    ct, pet, mri = (model_intensity_transform(t) for t in TASKS)
    assert isinstance(ct, HUWindow) and (ct.lower, ct.upper) == (-1024.0, 3072.0) and not ct.clip
    assert isinstance(pet, SUVNormalize) and (pet.lower, pet.upper) == (0.0, 20.0) and not pet.clip
    assert isinstance(mri, MRINormalize) and mri.mode == "percentile" and mri.percentiles == (0.5, 99.5)
    assert model_intensity_transform("CT", clip=True).clip
    with pytest.raises(UserInputError, match="ct, pet, mri"):
        model_intensity_transform("xray")


def _mri_volume(seed: int = 0) -> MetaTensor:
    """(1, 20, 18, 5) gamma-distributed signal, a different brightness per axial slice."""
    rng = np.random.default_rng(seed)
    data = rng.gamma(2.0, 300.0, size=(1, 20, 18, 5)).astype(np.float32) * np.array([0.5, 1, 2, 3, 8], np.float32)
    return MetaTensor(torch.from_numpy(data), affine=torch.diag(torch.tensor([0.8, 0.8, 2.0, 1.0])))


def test_mri_task_mapping_is_per_slice_and_a_slice_maps_the_same_alone():
    volume = _mri_volume()
    y = model_intensity_transform("mri")(volume)
    lo, hi = np.percentile(volume.numpy().astype(np.float64), (0.5, 99.5), axis=(0, 1, 2))
    bounds = ModelBounds.from_record(y.applied_operations[-1]["extra_info"])
    assert bounds.axis == 3 and np.allclose(bounds.lower, lo) and np.allclose(bounds.upper, hi)
    for k in range(5):  # the slice alone, as a 2D channel-first image, and as a one-slice volume
        alone = model_intensity_transform("mri")(volume[..., k])
        one_slice = model_intensity_transform("mri")(volume[..., k : k + 1])
        assert torch.equal(alone.as_tensor(), y.as_tensor()[..., k])
        assert torch.equal(one_slice.as_tensor()[..., 0], y.as_tensor()[..., k])
    torch.testing.assert_close(model_intensity_transform("mri").inverse(y).as_tensor(), volume.as_tensor(),
                               rtol=1e-5, atol=1e-3)
    whole = MRINormalize()(volume)  # the per-volume mode is still there for who asks for it
    assert not isinstance(whole.applied_operations[-1]["extra_info"]["lower"], list)


def test_per_slice_axis_follows_the_affine():
    volume = _mri_volume()
    moved = MetaTensor(volume.as_tensor().movedim(3, 1).contiguous(),
                       affine=torch.tensor([[0, 0, 0.8, 0], [0, 0.8, 0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1.0]]))
    y = MRINormalize(per_slice=True)(moved)  # the superior axis is array axis 0 now: dim 1 with the channel
    assert y.applied_operations[-1]["extra_info"]["axis"] == 1
    assert torch.equal(y.as_tensor().movedim(1, 3), MRINormalize(per_slice=True)(volume).as_tensor())


def test_degenerate_slices_are_shifted_or_widened_never_divided_by_zero():
    from monai_tat.transforms.model_mapping import slice_percentile_bounds

    slices = np.zeros((3, 40, 40), np.float32)
    slices[0] = 123.0  # constant
    rng = np.random.default_rng(1)
    slices[1] = rng.uniform(0, 5, (40, 40))  # air noise ...
    slices[1, :2, :2] = 1000.0  # ... and 4 voxels (0.25 %) of tissue: the 99.5th percentile is the noise
    slices[2] = rng.gamma(2.0, 300.0, (40, 40))  # an ordinary slice
    bounds = slice_percentile_bounds(torch.from_numpy(slices), (0.5, 99.5), axis=0)
    assert bounds.constant == 1 and bounds.widened == 1
    assert bounds.lower[0] == 123.0 and bounds.upper[0] == 124.0
    span = bounds.upper - bounds.lower
    assert span[1] == pytest.approx(MIN_SPREAD * (1000.0 - slices[1].min()))
    assert (bounds.lower[2], bounds.upper[2]) == pytest.approx(tuple(np.percentile(slices[2].astype(np.float64), (0.5, 99.5))))
    mapped = MRINormalize(per_slice=True)(torch.from_numpy(slices).permute(1, 2, 0)[None])
    assert torch.isfinite(mapped).all() and float(mapped.max()) <= 1.0 / MIN_SPREAD + 1e-4
    assert float(mapped[..., 0].abs().max()) == 0.0  # the constant slice: shifted to 0, not scaled
    with pytest.raises(UserInputError, match="per_slice"):
        MRINormalize(mode="fixed", per_slice=True)
