"""Low-count PET simulation: noise insertion that keeps mean and resolution, noise growing with the DRF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy.ndimage import binary_dilation, binary_erosion
from skimage.transform import iradon, radon

from monai_tat.errors import UserInputError
from monai_tat.transforms import LowCountPET, LowCountPETd

N = 128


def _grid(n: int = N):
    return np.mgrid[:n, :n] - n / 2 + 0.5


def _disc_phantom():
    """SUV 4 disc (radius 20 px, far larger than the ~2 px noise grain) on an SUV 1 body, air around."""
    yy, xx = _grid()
    body = (yy / 50) ** 2 + (xx / 58) ** 2 <= 1
    disc = yy**2 + (xx - 12) ** 2 <= 20**2
    suv = np.where(body, 1.0, 0.0)
    suv[disc] = 4.0
    band = disc & ~binary_erosion(disc, iterations=3)  # 3-pixel band inside the disc's edge
    background = body & ((yy + 5) ** 2 + (xx + 30) ** 2 <= 12**2)
    return suv, body, disc, band, background


def _noise_std(drf, seeds=range(4), **kw):
    suv, _, _, _, background = _disc_phantom()
    return float(np.mean([(LowCountPET(drf, seed=s, **kw)(suv) - suv)[background].std() for s in seeds]))


def test_mean_and_edge_are_kept_within_three_percent():
    suv, body, disc, band, background = _disc_phantom()
    outputs = np.stack([LowCountPET(12, seed=s)(suv) for s in range(8)])
    mean_image = outputs.mean(axis=0)
    for region in (disc, band, background, body):
        ratio = float(mean_image[region].mean() / suv[region].mean())
        assert ratio == pytest.approx(1.0, abs=0.03)  # stated tolerance: 3 % inside and at the edge
    assert float(outputs[:, disc].std()) > 0.3  # and noise was really added (std / mean > 7 %)


def test_noise_std_grows_like_sqrt_of_drf_minus_one():
    stds = {r: _noise_std(r, seeds=range(10 * r, 10 * r + 4)) for r in (2, 5, 12, 17)}  # independent noise
    for r in (5, 12, 17):  # the input already holds full-dose noise: added variance (r - 1) / c
        assert stds[r] / stds[2] == pytest.approx(np.sqrt(r - 1), rel=0.1)
    suv = _disc_phantom()[0]
    np.testing.assert_array_equal(LowCountPET(1, seed=0)(suv), suv.astype(np.float32))  # full dose: nothing added


def test_noise_free_input_gets_the_whole_low_dose_variance():
    ratio = _noise_std(12, account_for_input_noise=False) / _noise_std(12)
    assert ratio == pytest.approx(np.sqrt(12 / 11), rel=0.03)  # sqrt(r) instead of sqrt(r - 1)


def test_more_counts_less_noise_and_noise_follows_activity():
    assert _noise_std(12, counts_per_suv_pixel=800.0) / _noise_std(12) == pytest.approx(0.5, rel=0.05)
    suv, body, disc, _, background = _disc_phantom()
    noise = np.stack([LowCountPET(12, seed=s)(suv) - suv for s in range(4)])
    inner = binary_erosion(disc, iterations=4)
    # variance proportional to the local activity, as in clinical OSEM images: SUV 4 vs SUV 1
    assert float(noise[:, inner].var() / noise[:, background].var()) == pytest.approx(4.0, rel=0.2)
    far_air = ~binary_dilation(body, iterations=8)  # air at least 8 px outside the body
    assert float(np.abs(noise[:, far_air]).max()) < 1e-3  # air gets no counts


def test_default_count_level_gives_clinical_noise():
    yy, xx = _grid()
    body = (yy / 40) ** 2 + (xx / 50) ** 2 <= 1  # 32 x 40 cm at 4 mm pixels, SUV 1
    centre = yy**2 + xx**2 <= 15**2
    suv = body.astype(np.float64)
    full = np.mean([(LowCountPET(2, seed=s)(suv) - suv)[centre].std() for s in range(4)])  # one full-dose variance
    low = np.mean([(LowCountPET(12, seed=s)(suv) - suv)[centre].std() for s in range(4)])
    assert 0.07 < full < 0.13 and 0.25 < low < 0.42  # documented: about 10 % and 34 %


def test_variance_and_grain_match_a_projection_domain_fbp_simulation():
    n, views, counts = 96, 120, 200.0
    yy, xx = _grid(n)
    disc = yy**2 + xx**2 <= 30**2
    suv = disc.astype(np.float64)
    theta = np.linspace(0.0, 180.0, views, endpoint=False)
    sinogram = radon(suv, theta, circle=True)
    noise_free = iradon(sinogram, theta, circle=True, filter_name="hann")
    rng = np.random.default_rng(0)
    fbp = np.stack([
        iradon(rng.poisson(sinogram * counts / views) * views / counts, theta, circle=True, filter_name="hann")
        - noise_free
        for _ in range(6)
    ])
    # one full-dose variance, unfiltered Hann FBP: the reconstruction the model describes
    model = np.stack([LowCountPET(2, counts_per_suv_pixel=counts, postfilter_fwhm_pixels=0.0, seed=s)(suv) - suv
                      for s in range(6)])
    inner = yy**2 + xx**2 <= 26**2
    assert float(model[:, inner].var() / fbp[:, inner].var()) == pytest.approx(1.0, rel=0.15)

    def lag_one(noise):
        a = noise[:, 30:66, 30:66]
        return float(np.mean(a[:, :, :-1] * a[:, :, 1:]) / np.mean(a * a))

    assert lag_one(model) == pytest.approx(lag_one(fbp), abs=0.08)


def test_postfilter_coarsens_the_grain_and_lowers_the_noise():
    assert _noise_std(12, postfilter_fwhm_pixels=3.0) < 0.8 * _noise_std(12, postfilter_fwhm_pixels=0.0)


@pytest.mark.parametrize("shape", [(40, 48), (1, 40, 48), (2, 40, 48, 3)])
def test_shapes_containers_and_seeded_reproducibility(shape):
    rng = np.random.default_rng(0)
    suv = (1.0 + rng.random(shape)).astype(np.float32)
    a = LowCountPET(12, seed=7)(suv)
    b = LowCountPET(12, seed=7)(suv)
    assert a.shape == suv.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, LowCountPET(12, seed=8)(suv))
    t = LowCountPET(12, seed=7)(torch.from_numpy(suv))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), a)


def test_volume_slices_get_independent_noise_and_metadata_is_kept():
    suv = np.stack([_disc_phantom()[0]] * 2, axis=-1)[None].astype(np.float32)  # (1, H, W, 2)
    out = LowCountPET(12, seed=3)(MetaTensor(torch.from_numpy(suv), meta={"units": "SUV"}))
    assert isinstance(out, MetaTensor) and out.meta["units"] == "SUV"
    assert not np.array_equal(out[..., 0].numpy(), out[..., 1].numpy())


def test_dictionary_version():
    suv = np.stack([_disc_phantom()[0]] * 2, axis=-1)[None].astype(np.float32)
    a = LowCountPET(12, seed=7)(suv)
    d = LowCountPETd(["image"], 12, seed=7)({"image": suv, "label": suv})
    np.testing.assert_array_equal(d["image"], a)
    assert d["label"] is suv


@pytest.mark.parametrize(
    "kwargs",
    [{"dose_reduction_factor": 0.5}, {"counts_per_suv_pixel": 0}, {"filter_name": "gauss"},
     {"postfilter_fwhm_pixels": -1}],
)
def test_bad_arguments_are_user_errors(kwargs):
    with pytest.raises(UserInputError):
        LowCountPET(**kwargs)
