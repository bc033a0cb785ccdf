"""The operator profile benchmark: shares add up, convolutions and matrix products count as kernels."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from monai_tat.benchmarks.cpu_profile import KERNEL_OPERATORS, kernel_share, main, profile_forward


class _ConvThenGelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.gelu(self.conv(x))
        return (y.flatten(2) @ y.flatten(2).transpose(1, 2)).sum() + y.mean()


def test_profile_shares_sum_to_one_and_find_the_kernels():
    rows, wall = profile_forward(_ConvThenGelu().eval(), torch.rand(1, 1, 32, 32))
    assert wall > 0
    assert sum(row.share for row in rows) == pytest.approx(1.0, abs=1e-6)
    assert [row.self_seconds for row in rows] == sorted((row.self_seconds for row in rows), reverse=True)
    names = {row.name for row in rows}
    assert "aten::gelu" in names and names & KERNEL_OPERATORS
    assert 0.0 < kernel_share(rows) < 1.0


def test_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["--network", "tat", "--size", "16", "--threads", "1", "--top", "3", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["size"] == [16, 16] and record["operators"]
    assert record["bound"] == pytest.approx(1.0 / record["kernel_share"])
    assert "kernel share" in capsys.readouterr().out
