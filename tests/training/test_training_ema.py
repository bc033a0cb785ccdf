"""EMA of weights: first update copies, then ema = beta * ema + (1 - beta) * weights; wrappers unwrapped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_tat.training import create_ema, save_state_dict, unwrap_model


def test_ema_update_rule_and_unwrap(tmp_path) -> None:
    net = nn.Linear(2, 1)
    ema = create_ema(nn.DataParallel(net), decay=0.9)
    assert unwrap_model(ema) is not net and isinstance(unwrap_model(ema), nn.Linear)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update_parameters(net)  # first update: copy
    torch.testing.assert_close(unwrap_model(ema).weight, torch.ones(1, 2))
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update_parameters(net)
    torch.testing.assert_close(unwrap_model(ema).weight, torch.full((1, 2), 0.9 * 1.0 + 0.1 * 3.0))
    saved = torch.load(save_state_dict(ema, tmp_path / "m.pt"), weights_only=True)
    assert set(saved) == {"weight", "bias"}  # plain keys, no "module." / "n_averaged"
    torch.testing.assert_close(saved["weight"], torch.full((1, 2), 1.2))


def test_decay_out_of_range() -> None:
    with pytest.raises(ValueError, match="decay"):
        create_ema(nn.Linear(1, 1), decay=1.0)
