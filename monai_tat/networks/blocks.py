"""Building blocks shared by Restormer, TAT and AMIR (single-channel 2D restoration trunks).

Tensors are ``(B, C, H, W)`` unless stated. The blocks follow Restormer (Zamir et al., CVPR 2022):
channel LayerNorm, multi-Dconv head transposed attention (MDTA), gated-Dconv feed-forward (GDFN),
pixel-(un)shuffle resampling, and the test-time local attention windows (TLC, Chu et al., ECCV
2022) that TAT's reference applies whenever a feature map is larger than a window.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LayerNorm2d",
    "per_sample_depthwise_conv",
    "ChannelAttention",
    "GatedFeedForward",
    "TransformerBlock",
    "Downsample",
    "Upsample",
    "window_starts",
    "gdfn_hidden_channels",
]


def gdfn_hidden_channels(channels: int, ffn_expansion_factor: float) -> int:
    """Hidden width of the GDFN, ``int(channels * factor)`` exactly as the reference truncates it."""
    return int(channels * ffn_expansion_factor)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of every pixel, with a bias ("WithBias" in Restormer).

    ``(x - mean_C) / sqrt(var_C + eps) * weight + bias`` with the biased variance. Input and output
    ``(B, C, H, W)``. Not InstanceNorm: statistics are per pixel, across channels.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # layer_norm over the last axis of a channels-last view; the result keeps a channels-last
        # memory layout, which the following 1x1 convolution consumes without a copy.
        x_last = x.permute(0, 2, 3, 1)
        out = F.layer_norm(x_last, (x_last.shape[-1],), self.weight, self.bias, self.eps)
        return out.permute(0, 3, 1, 2)


def per_sample_depthwise_conv(
    x: torch.Tensor, shared_kernel: torch.Tensor, kernel_scale: torch.Tensor, generated: torch.Tensor
) -> torch.Tensor:
    """TAT's weight-adaptive 3x3 depthwise convolution: ``W_b = W_shared + lambda * W_generated[b]``.

    Args:
        x: ``(B, C, H, W)``.
        shared_kernel: ``dw_kernel`` ``(1, C, 1, 3, 3)``, shared by all samples.
        kernel_scale: ``lambda_dw`` ``(1, C, 1, 1, 1)``, zero at start so training begins from
            the shared kernel.
        generated: ``(B, C, 1, 3, 3)`` kernels generated from each sample's task representation.

    Returns:
        ``(B, C, H, W)``: every sample convolved with its own kernel through one grouped
        convolution over ``B * C`` groups.
    """
    batch, channels, height, width = x.shape
    kernels = (shared_kernel + kernel_scale * generated).reshape(batch * channels, 1, 3, 3)
    out = F.conv2d(x.reshape(1, batch * channels, height, width), kernels, padding=1, groups=batch * channels)
    return out.reshape(batch, channels, height, width)


def window_starts(length: int, window: int) -> list[int]:
    """Start offsets of the overlapping local windows along one axis of ``length`` pixels.

    TLC placement: ``k = min(length, window)`` wide windows, ``(length - 1) // k + 1`` of them,
    a regular step, and the last start clamped to ``length - k`` so the windows cover the axis.
    """
    k = min(length, window)
    count = (length - 1) // k + 1
    step = k if count == 1 else math.ceil((length - k) / (count - 1) - 1e-8)
    starts: list[int] = []
    start = 0
    while start < length:
        if start + k >= length:
            starts.append(length - k)
            break
        starts.append(start)
        start += step
    return starts


class ChannelAttention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA), optionally inside TLC local windows.

    ``qkv`` 1x1 conv C -> 3C, a 3x3 depthwise conv (static, or TAT's per-sample kernel), then
    attention across channels per head: L2-normalised q and k over pixels,
    ``softmax(q k^T * temperature) v``, and ``project_out`` 1x1 conv.

    Args:
        channels: C.
        num_heads: heads; C must be divisible by it.
        adaptive: per-sample generated depthwise kernel (TAT's WATB) instead of a static one.
        local_window: TLC window side at this level (``None``: always global attention). When the
            feature map is larger than the window along an axis, attention is computed in
            overlapping windows and averaged where they overlap.
    """

    def __init__(
        self, channels: int, num_heads: int, adaptive: bool = False, local_window: Optional[int] = None
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads}).")
        self.num_heads = num_heads
        self.local_window = local_window
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(channels, channels * 3, kernel_size=1, bias=False)
        if adaptive:
            self.dw_kernel = nn.Parameter(torch.randn(1, channels * 3, 1, 3, 3))
            self.lambda_dw = nn.Parameter(torch.zeros(1, channels * 3, 1, 1, 1))
        else:
            self.qkv_dwconv = nn.Conv2d(channels * 3, channels * 3, 3, padding=1, groups=channels * 3, bias=False)
        self.project_out = nn.Conv2d(channels, channels, kernel_size=1, bias=False)

    def _depthwise(self, qkv: torch.Tensor, generated: Optional[torch.Tensor]) -> torch.Tensor:
        if not hasattr(self, "dw_kernel"):
            return self.qkv_dwconv(qkv)
        if generated is None:
            raise ValueError("a weight-adaptive attention needs its generated kernel.")
        return per_sample_depthwise_conv(qkv, self.dw_kernel, self.lambda_dw, generated)

    def _attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Global attention over all pixels of ``qkv`` ``(N, 3C, h, w)`` -> ``(N, C, h, w)``."""
        n, c3, h, w = qkv.shape
        c_head = c3 // (3 * self.num_heads)
        q, k, v = qkv.reshape(n, 3, self.num_heads, c_head, h * w).unbind(1)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return (attn @ v).reshape(n, c3 // 3, h, w)

    def _attend_in_windows(self, qkv: torch.Tensor, rows: list[int], cols: list[int], size: tuple[int, int]) -> torch.Tensor:
        """TLC: attention inside every (row, col) window, overlaps averaged. Per sample, batched."""
        batch, c3, height, width = qkv.shape
        kh, kw = size
        windows = torch.stack([qkv[:, :, r : r + kh, c : c + kw] for r in rows for c in cols], dim=1)
        out_windows = self._attend(windows.reshape(-1, c3, kh, kw)).reshape(batch, len(rows) * len(cols), c3 // 3, kh, kw)
        out = qkv.new_zeros(batch, c3 // 3, height, width)
        coverage = qkv.new_zeros(1, 1, height, width)
        index = 0
        for r in rows:
            for c in cols:
                out[:, :, r : r + kh, c : c + kw] += out_windows[:, index]
                coverage[:, :, r : r + kh, c : c + kw] += 1.0
                index += 1
        return out / coverage

    def forward(self, x: torch.Tensor, generated: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``; ``generated`` ``(B, 3C, 1, 3, 3)`` for adaptive blocks."""
        qkv = self._depthwise(self.qkv(x), generated)
        height, width = qkv.shape[-2:]
        window = self.local_window
        if window is None or (height <= window and width <= window):
            # A single window covering the map is global attention.
            out = self._attend(qkv)
        else:
            size = (min(height, window), min(width, window))
            out = self._attend_in_windows(qkv, window_starts(height, window), window_starts(width, window), size)
        return self.project_out(out)


class GatedFeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN).

    1x1 conv C -> 2h, 3x3 depthwise conv (static or TAT's per-sample kernel), ``gelu(x1) * x2``,
    1x1 conv h -> C, with ``h = int(C * ffn_expansion_factor)``.
    """

    def __init__(self, channels: int, ffn_expansion_factor: float, adaptive: bool = False) -> None:
        super().__init__()
        hidden = gdfn_hidden_channels(channels, ffn_expansion_factor)
        self.project_in = nn.Conv2d(channels, hidden * 2, kernel_size=1, bias=False)
        if adaptive:
            self.dw_kernel = nn.Parameter(torch.empty(1, hidden * 2, 1, 3, 3))
            nn.init.kaiming_normal_(self.dw_kernel, mode="fan_out", nonlinearity="relu")
            self.lambda_dw = nn.Parameter(torch.zeros(1, hidden * 2, 1, 1, 1))
        else:
            self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, generated: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``; ``generated`` ``(B, 2h, 1, 3, 3)`` for adaptive blocks."""
        hidden = self.project_in(x)
        if hasattr(self, "dw_kernel"):
            if generated is None:
                raise ValueError("a weight-adaptive feed-forward needs its generated kernel.")
            hidden = per_sample_depthwise_conv(hidden, self.dw_kernel, self.lambda_dw, generated)
        else:
            hidden = self.dwconv(hidden)
        gate, value = hidden.chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class TransformerBlock(nn.Module):
    """``x + attn(norm1(x))`` then ``x + ffn(norm2(x))``; ``adaptive`` makes it TAT's WATB."""

    def __init__(
        self,
        channels: int,
        num_heads: int,
        ffn_expansion_factor: float,
        adaptive: bool = False,
        local_window: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(channels)
        self.attn = ChannelAttention(channels, num_heads, adaptive=adaptive, local_window=local_window)
        self.norm2 = LayerNorm2d(channels)
        self.ffn = GatedFeedForward(channels, ffn_expansion_factor, adaptive=adaptive)

    def forward(
        self,
        x: torch.Tensor,
        attn_kernel: Optional[torch.Tensor] = None,
        ffn_kernel: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_kernel)
        return x + self.ffn(self.norm2(x), ffn_kernel)


class Downsample(nn.Module):
    """3x3 conv C -> C/2 then PixelUnshuffle(2): ``(B, C, H, W)`` -> ``(B, 2C, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels // 2, 3, padding=1, bias=False)
        self.shuffle = nn.PixelUnshuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class Upsample(nn.Module):
    """3x3 conv C -> 2C then PixelShuffle(2): ``(B, C, H, W)`` -> ``(B, C/2, 2H, 2W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 2, 3, padding=1, bias=False)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))
