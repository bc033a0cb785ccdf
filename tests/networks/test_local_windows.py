"""TAT's test-time local windows (TLC): the copy-free averaging equals the plain definition.

Plain definition: crop every window, run global channel attention on the crop, add the window's
output into a zero map and divide by how many windows cover each pixel.
"""

from __future__ import annotations

import pytest
import torch

from monai_tat.networks.blocks import ChannelAttention, window_starts


def _plain_tlc(attention: ChannelAttention, tokens: torch.Tensor, window: int) -> torch.Tensor:
    batch, height, width, c3 = tokens.shape
    kh, kw = min(height, window), min(width, window)
    total = torch.zeros(batch, height, width, c3 // 3, dtype=tokens.dtype)
    count = torch.zeros(1, height, width, 1, dtype=tokens.dtype)
    for r in window_starts(height, window):
        for c in window_starts(width, window):
            crop = tokens[:, r : r + kh, c : c + kw].reshape(batch, kh * kw, c3)
            total[:, r : r + kh, c : c + kw] += attention._attend(crop).reshape(batch, kh, kw, c3 // 3)
            count[:, r : r + kh, c : c + kw] += 1
    return total / count


@pytest.mark.parametrize("heads, height, width, window", [(1, 40, 40, 16), (2, 37, 52, 24), (4, 24, 61, 24)])
def test_copy_free_windows_equal_averaged_window_outputs(heads, height, width, window) -> None:
    torch.manual_seed(heads)
    channels = 8 * heads
    attention = ChannelAttention(channels, heads, local_window=window).double().eval()
    with torch.no_grad():
        attention.temperature.uniform_(0.5, 2.0)
        tokens = torch.randn(3, height, width, 3 * channels, dtype=torch.float64)
        rows, cols = window_starts(height, window), window_starts(width, window)
        size = (min(height, window), min(width, window))
        fast = attention._attend_in_windows(tokens, rows, cols, size)
        plain = _plain_tlc(attention, tokens, window)
    assert len(rows) * len(cols) > 1  # windows really overlap or tile
    assert fast.shape == plain.shape
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-12)


def test_windowed_forward_matches_plain_definition_and_autograd_flows() -> None:
    torch.manual_seed(0)
    attention = ChannelAttention(16, 2, local_window=20).double()
    x = torch.randn(2, 16, 33, 45, dtype=torch.float64, requires_grad=True)
    out = attention(x)
    qkv = attention.qkv_dwconv(attention.qkv(x)).permute(0, 2, 3, 1)
    plain = attention.project_out(_plain_tlc(attention, qkv, 20).permute(0, 3, 1, 2))
    torch.testing.assert_close(out, plain, rtol=0, atol=1e-12)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
