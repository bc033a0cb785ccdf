"""The PET count-level sweep: noisier inputs, larger linear gains; the network is scored as restored."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from monai_tat.errors import UserInputError
from pet_count_sweep import main, sweep_counts


def _map() -> np.ndarray:
    yy, xx = np.mgrid[:48, :48] - 23.5
    body = np.where(np.hypot(xx / 20, yy / 16) <= 1, 1.5, 0.0)
    body[np.hypot(xx - 6, yy) < 5] = 8.0
    return np.stack([ndimage.gaussian_filter(body, 1.2)] * 3, axis=-1).astype(np.float32)


class _Blur(torch.nn.Module):
    """A fixed 3x3 box filter: a denoiser with a positive gain on noisy maps."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def test_noisier_levels_have_lower_input_psnr_and_larger_linear_gains():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    identity = sweep_counts(_map(), affine, torch.nn.Identity(), [0.25, 1.0])
    assert identity[0].input_db < identity[1].input_db - 3.0
    assert identity[0].wiener_gain_db > identity[1].wiener_gain_db > 0
    assert identity[0].counts_per_suv_pixel == pytest.approx(identity[1].counts_per_suv_pixel / 4)
    for score in identity:  # the identity network gives its input back: no gain
        assert abs(score.network_gain_db) < 0.05
        assert score.over_linear_db == pytest.approx(score.network_gain_db - score.wiener_gain_db)
    blurred = sweep_counts(_map(), affine, _Blur(), [0.25])
    assert blurred[0].network_gain_db > 1.0


def test_bad_inputs_are_refused():
    with pytest.raises(UserInputError, match="3D SUV"):
        sweep_counts(_map()[..., 0], np.eye(4), torch.nn.Identity(), [1.0])
    with pytest.raises(UserInputError, match="positive"):
        sweep_counts(_map(), np.eye(4), torch.nn.Identity(), [0.0])


def test_command_prints_one_row_per_level(tmp_path, capsys):
    import nibabel as nib

    path = tmp_path / "pet_map.nii.gz"
    nib.save(nib.Nifti1Image(_map(), np.diag([3.0, 3.0, 3.0, 1.0])), str(path))
    assert main([str(path), "--weights", "tat", "--scales", "0.5", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| pet_map")]
    assert len(rows) == 2 and rows[0].split("|")[2].strip() == "0.5"
