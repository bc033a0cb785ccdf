"""Paper-convention PSNR / SSIM / RMSE against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_tat.errors import UserInputError
from monai_tat.metrics import EVAL_WINDOWS, psnr, rmse, slice_metrics, ssim, summarize


def _gauss_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_loops(x: np.ndarray, y: np.ndarray, r: float) -> float:
    """SSIM by explicit sums over an 11x11 window with zero padding (independent of torch/MONAI)."""
    g = _gauss_1d()
    w = np.outer(g, g)
    h, wd = x.shape
    xp = np.zeros((h + 10, wd + 10))
    yp = np.zeros((h + 10, wd + 10))
    xp[5:-5, 5:-5], yp[5:-5, 5:-5] = x, y
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    values = []
    for i in range(h):
        for j in range(wd):
            px, py = xp[i : i + 11, j : j + 11], yp[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * px * px).sum() - mx * mx
            vy = (w * py * py).sum() - my * my
            cxy = (w * px * py).sum() - mx * my
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_psnr_and_rmse_by_hand():
    pred = np.array([[0.0, 1.0], [2.0, 3.0]])
    label = np.array([[0.0, 1.0], [2.0, 5.0]])
    # R = 5 - 0 = 5 from the label; MSE = 4 / 4 = 1.
    assert psnr(pred, label) == pytest.approx(10 * math.log10(25.0))
    assert rmse(pred, label) == pytest.approx(1.0)


def test_ct_window_clips_both_and_range_comes_from_clipped_label():
    # Label spans beyond the CT window; after clipping R = 240 - (-160) = 400.
    label = np.array([[-1000.0, 0.0], [100.0, 3000.0]])
    pred = np.array([[-500.0, 10.0], [100.0, 200.0]])
    # Clipped: pred [-160, 10, 100, 200], label [-160, 0, 100, 240] -> errors 0, 10, 0, -40.
    mse = (10.0**2 + 40.0**2) / 4
    assert psnr(pred, label, task="ct") == pytest.approx(10 * math.log10(400.0**2 / mse))
    assert rmse(pred, label, task="ct") == pytest.approx(math.sqrt(mse))
    assert EVAL_WINDOWS["pet"] == (0.0, 20.0) and EVAL_WINDOWS["mri"] == (0.0, 4095.0)


def test_data_range_is_per_image_from_label_not_prediction():
    label = np.array([[1.0, 3.0]])
    pred = np.array([[0.0, 10.0]])
    # R = 3 - 1 = 2 (prediction's range 10 is ignored); MSE = (1 + 49) / 2 = 25.
    assert psnr(pred, label, task="pet") == pytest.approx(10 * math.log10(4.0 / 25.0))


def test_ssim_one_pixel_closed_form_shows_zero_padding():
    # One pixel: the window sees the pixel with weight w0 = g0^2 and zeros elsewhere, so
    # mu_x = w0 a, var_x = w0 a^2 - (w0 a)^2, cov = w0 a b - w0^2 a b.
    a, b, r = 3.0, 5.0, 10.0
    w0 = _gauss_1d()[5] ** 2
    mx, my = w0 * a, w0 * b
    vx, vy, cxy = w0 * a * a - mx * mx, w0 * b * b - my * my, w0 * a * b - mx * my
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    expected = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(np.array([[a]]), np.array([[b]]), data_range=r) == pytest.approx(expected, rel=1e-5)


def test_ssim_matches_explicit_window_sums_with_label_range():
    rng = np.random.default_rng(3)
    label = rng.uniform(0, 8, (7, 9))
    pred = label + rng.normal(0, 1.0, label.shape)
    r = label.max() - label.min()
    assert ssim(pred, label) == pytest.approx(_ssim_loops(pred, label, r), abs=1e-5)
    # With the PET window the prediction's negatives are clipped to 0 before SSIM.
    clipped = np.clip(pred, 0, 20)
    assert ssim(pred, label, task="pet") == pytest.approx(_ssim_loops(clipped, label, r), abs=1e-5)


def test_identical_images_and_constant_label():
    x = np.arange(12.0).reshape(3, 4)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert psnr(x, x) == math.inf
    flat = np.ones((3, 4))
    assert math.isnan(psnr(x, flat)) and math.isnan(ssim(x, flat))


def test_accepts_torch_and_rejects_bad_inputs():
    x = torch.rand(5, 6, dtype=torch.float64)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(UserInputError, match="shape"):
        psnr(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(UserInputError, match="task"):
        psnr(x, x, task="xray")
    with pytest.raises(UserInputError, match="2D"):
        ssim(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_slice_metrics_per_slice_range_and_summary():
    rng = np.random.default_rng(0)
    label = rng.uniform(-100, 200, (6, 5, 3))
    label[..., 1] = 7.0  # a constant slice: undefined PSNR / SSIM, skipped in the means
    pred = label + rng.normal(0, 5, label.shape)
    values = slice_metrics(pred, label, "ct", axis=2)
    assert values["psnr"].shape == (3,)
    assert values["psnr"][0] == pytest.approx(psnr(pred[..., 0], label[..., 0], "ct"))
    assert values["ssim"][2] == pytest.approx(ssim(pred[..., 2], label[..., 2], "ct"))
    assert math.isnan(values["psnr"][1])
    summary = summarize(values)
    assert summary["n"] == 2 and summary["n_skipped"] == 1
    assert summary["psnr"] == pytest.approx((values["psnr"][0] + values["psnr"][2]) / 2)
    assert summary["rmse"] == pytest.approx((values["rmse"][0] + values["rmse"][2]) / 2)
