"""The CT dose sweep: higher fluence, cleaner input; the network is scored as restored."""

from __future__ import annotations

import pytest
import torch

from ct_dose_sweep import main, sweep_fluence
from monai_tat.errors import UserInputError


class _Blur(torch.nn.Module):
    """A fixed 5x5 box filter: it helps a noisy input and harms a clean one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)


def test_cleaner_inputs_score_higher_and_a_fixed_smoother_loses_on_them():
    identity = sweep_fluence(torch.nn.Identity(), [1.0, 16.0], [3], size=64, slices=1)
    assert identity[1].input_db > identity[0].input_db + 6.0  # 16x the photons: 4x less noise
    assert all(abs(s.network_gain_db) < 0.05 for s in identity)  # the identity gives its input back
    blur = sweep_fluence(_Blur(), [1.0, 64.0], [3], size=64, slices=1)
    assert blur[0].network_gain_db > blur[1].network_gain_db and blur[1].network_gain_db < 0


def test_bad_scales_are_refused():
    with pytest.raises(UserInputError, match="positive"):
        sweep_fluence(torch.nn.Identity(), [0.0], [1])


def test_command_prints_one_row_per_seed_and_level(capsys):
    assert main(["--weights", "tat", "--scales", "1", "8", "--seeds", "5", "--size", "64", "--slices", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 5 |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "8"]
