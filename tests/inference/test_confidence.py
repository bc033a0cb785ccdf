"""Confidence map: ensemble spread over the 8 views (task units) plus MRI detail invented outside the band."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_standins import Skewed, Smoother
from monai.data import MetaTensor
from torch import nn

from monai_tat.inference import restore_volume
from monai_tat.inference.confidence import invented_detail, restore_with_confidence
from monai_tat.transforms.degrade_mri import truncate_kspace



class _Pointwise(nn.Module):
    """Exactly flip-invariant: acts on each pixel alone."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.9 * x + 0.02


def _ct_volume(shape: tuple[int, int, int] = (24, 20, 3)) -> MetaTensor:
    rng = np.random.default_rng(0)
    hu = rng.normal(40.0, 120.0, size=shape).astype(np.float32)
    hu[:3] = -1000.0  # air at one edge
    affine = torch.tensor([[0.8, 0, 0, -10.0], [0, 0.7, 0, 5.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1.0]],
                          dtype=torch.float64)
    return MetaTensor(torch.from_numpy(hu), affine=affine)


def _numpy_member_outputs(volume: MetaTensor, net: nn.Module) -> np.ndarray:
    """The 8 restorations built independently: NumPy rot90 of every slice inside the network."""

    class Rotated(nn.Module):
        def __init__(self, mirrored: bool, k: int) -> None:
            super().__init__()
            self.mirrored, self.k = mirrored, k

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            image = x[0, 0].numpy()
            base = image[:, ::-1] if self.mirrored else image
            with torch.no_grad():
                out = net(torch.from_numpy(np.ascontiguousarray(np.rot90(base, self.k)))[None, None])[0, 0].numpy()
            out = np.rot90(out, -self.k)
            out = out[:, ::-1] if self.mirrored else out
            return torch.from_numpy(np.ascontiguousarray(out))[None, None]

    outputs = [restore_volume(volume, Rotated(m, k), task="ct", device="cpu", batch_size=1).numpy()
               for m in (False, True) for k in range(4)]
    return np.stack(outputs)


def test_spread_is_the_standard_deviation_of_the_eight_views_in_hu() -> None:
    volume, net = _ct_volume(), Skewed()
    restored, confidence = restore_with_confidence(volume, net, task="ct", device="cpu")
    members = _numpy_member_outputs(volume, net)
    np.testing.assert_allclose(confidence.numpy(), members.std(axis=0), atol=2e-2)
    assert float(confidence.max()) > 1.0  # HU: the skewed network's views really differ
    np.testing.assert_array_equal(restored.numpy(), restore_volume(volume, net, task="ct", device="cpu").numpy())
    assert confidence.meta["confidence"]["units"] == "HU"
    assert confidence.shape == volume.shape
    assert torch.equal(confidence.affine, volume.affine)


def test_self_ensemble_restoration_is_the_mean_of_the_views() -> None:
    volume, net = _ct_volume(), Skewed()
    restored, _ = restore_with_confidence(volume, net, task="ct", device="cpu", self_ensemble=True)
    expected = restore_volume(volume, net, task="ct", device="cpu", self_ensemble=True)
    np.testing.assert_allclose(restored.numpy(), expected.numpy(), atol=2e-2)
    assert restored.meta["restoration"]["self_ensemble"] is True


@pytest.mark.parametrize("net_factory, tolerance", [(_Pointwise, 0.0), (Smoother, 1e-2)])
def test_flip_invariant_network_has_zero_spread(net_factory, tolerance: float) -> None:
    _, confidence = restore_with_confidence(_ct_volume(), net_factory(), task="ct", device="cpu")
    assert float(confidence.abs().max()) <= tolerance


def test_invented_detail_is_the_out_of_band_part_of_the_change() -> None:
    low = torch.rand(32, 32, 2) + 1.0
    checkerboard = 0.3 * (-1.0) ** (torch.arange(32)[:, None] + torch.arange(32)[None, :])  # Nyquist
    smooth = 0.2 * torch.ones(32, 32)  # DC: inside the band
    restored = low + (checkerboard + smooth)[..., None]
    band = {"rows": [12, 20], "cols": [12, 20]}
    invented = invented_detail(restored, low, band, axis=2)
    assert invented.shape == restored.shape
    torch.testing.assert_close(invented, torch.full_like(invented, 0.3), atol=1e-5, rtol=0)


def _truncated_mri(size: int = 64, slices: int = 3) -> torch.Tensor:
    yy, xx = np.mgrid[:size, :size] - size / 2
    volume = []
    for k in range(slices):
        image = 300.0 * (xx**2 + yy**2 < (size / 3) ** 2) + 200.0 * (np.abs(xx - k) < size / 8)
        volume.append(truncate_kspace(image.astype(np.float64), 4.0))
    return torch.from_numpy(np.stack(volume, -1).astype(np.float32))


def test_mri_map_adds_detail_outside_the_measured_band() -> None:
    class AddsCheckerboard(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            board = (-1.0) ** (torch.arange(x.shape[-2])[:, None] + torch.arange(x.shape[-1])[None, :])
            return x + 0.05 * board.to(x.dtype)

    volume = _truncated_mri()
    restored, confidence = restore_with_confidence(volume, AddsCheckerboard(), task="mri", device="cpu")
    assert restored.meta["restoration"]["kspace_consistency"]["applied"] is True
    assert len(confidence.meta["confidence"]["parts"]) == 2
    # the checkerboard is equivariant (no spread): the map is what was added outside the band
    span = float(volume.quantile(0.995) - volume.quantile(0.005))
    assert float(confidence.median()) > 0.02 * span
    assert bool(torch.isfinite(confidence).all())


def test_progress_covers_all_views_once() -> None:
    calls: list[tuple[int, int]] = []
    restore_with_confidence(_ct_volume(), _Pointwise(), task="ct", device="cpu", batch_size=1,
                            progress=lambda done, total: calls.append((done, total)))
    totals = {total for _, total in calls}
    assert totals == {8 * 3}
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[-1] == 24 and done.count(24) == 1


def test_calibration_command_prints_a_row_per_demo_task(tmp_path, capsys) -> None:
    import json

    from monai_tat.benchmarks.__main__ import main

    out = tmp_path / "rows.json"
    assert main(["confidence", "--size", "48", "--slices", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["task"] for r in rows] == ["ct", "pet", "mri"]
    assert all(-1.0 <= r["rank_correlation"] <= 1.0 for r in rows)
    assert "rank corr" in capsys.readouterr().out
