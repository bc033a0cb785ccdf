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
    "window_segments",
    "gdfn_hidden_channels",
]


def _may_work_in_place() -> bool:
    """In-place updates save full-size allocations at inference; autograd and tracing need out-of-place."""
    return not torch.is_grad_enabled() and not torch.jit.is_tracing()


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
        out = F.layer_norm(x_last, [x_last.shape[-1]], self.weight, self.bias, self.eps)
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
        ``(B, C, H, W)``: every sample convolved with its own kernel.
    """
    channels = x.shape[1]
    kernels = shared_kernel + kernel_scale * generated  # (B, C, 1, 3, 3)
    # One depthwise convolution per sample: equal to a grouped convolution over B*C groups, and
    # it keeps the channels-last layout that folding the batch into channels would break.
    if x.shape[0] == 1:
        return F.conv2d(x, kernels[0], padding=1, groups=channels)
    return torch.cat([F.conv2d(x[b : b + 1], kernels[b], padding=1, groups=channels) for b in range(x.shape[0])])


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


def window_segments(starts: list[int], window: int, length: int) -> list[tuple[int, int, list[int]]]:
    """Split ``[0, length)`` into the runs of pixels covered by the same windows.

    Returns ``(begin, end, covering)`` per run, in order, ``covering`` the indices (ascending) of the
    windows of side ``window`` at ``starts`` that contain the run. (Plain loops over int lists, so
    TorchScript compiles it.)
    """
    candidates = [0, length]
    for start in starts:
        candidates.append(start)
        candidates.append(start + window)
    candidates.sort()
    bounds: list[int] = []
    for bound in candidates:
        if len(bounds) == 0 or bounds[-1] != bound:
            bounds.append(bound)
    segments: list[tuple[int, int, list[int]]] = []
    for run in range(len(bounds) - 1):
        begin, end = bounds[run], bounds[run + 1]
        covering: list[int] = []
        for index, start in enumerate(starts):
            if start <= begin and end <= start + window:
                covering.append(index)
        segments.append((begin, end, covering))
    return segments


def _is_half(x: torch.Tensor) -> bool:
    """fp16 / bf16 activations (CUDA autocast, or a network cast to half)."""
    return x.dtype == torch.float16 or x.dtype == torch.bfloat16


def _unit_columns(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, P, c)`` half -> each column over the P pixels divided by its L2 norm (clamped at
    1e-12, as ``F.normalize``), in ``x``'s dtype. The norm and the division run in float32: a sum
    of squares over a whole slice exceeds the fp16 range."""
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32).clamp_min(1e-12)
    return (x.float() / norm).to(x.dtype)


def _norm_from_squares(squares: torch.Tensor) -> torch.Tensor:
    """L2 norms from sums of squares, clamped at 1e-12 like ``F.normalize``.

    The clamp comes before the square root: an all-zero q or k column (a constant patch through a
    freshly initialised network) then gets a zero gradient, where ``sqrt(0)`` followed by a clamp
    gives ``0 * inf`` = NaN in every weight.
    """
    return squares.clamp_min(1e-24).sqrt()


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

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:
        """Attention across channels over all pixels of ``tokens`` ``(N, P, 3C)`` -> ``(N, P, C)``.

        Works on the channels-last layout without copying q, k, v in float32: the Gram matrix
        ``q^T k`` is taken from strided views, and the L2 normalisation of q and k over pixels is
        applied to it as ``1 / (|q_i| |k_j|)`` (as ``F.normalize``: norms clamped at 1e-12). In half
        precision (fp16 / bf16, e.g. under CUDA autocast) q and k are normalised first, so every
        Gram entry lies in [-1, 1]: the unnormalised product over all pixels overflows fp16.
        """
        channels = tokens.shape[-1] // 3
        c_head = channels // self.num_heads
        low_precision = _is_half(tokens)
        outputs = []
        for head in range(self.num_heads):
            lo = head * c_head
            q = tokens[..., lo : lo + c_head]
            k = tokens[..., channels + lo : channels + lo + c_head]
            v = tokens[..., 2 * channels + lo : 2 * channels + lo + c_head]
            if low_precision:
                gram = _unit_columns(q).transpose(1, 2) @ _unit_columns(k)  # (N, c, c), cosines
                attn = torch.softmax(gram * self.temperature[head], dim=-1)
            else:
                # square-and-sum reduces strided views faster than linalg.vector_norm does
                q_norm = _norm_from_squares(q.square().sum(dim=1))  # (N, c)
                k_norm = _norm_from_squares(k.square().sum(dim=1))
                gram = q.transpose(1, 2) @ k  # (N, c, c)
                scale = self.temperature[head] / (q_norm.unsqueeze(2) * k_norm.unsqueeze(1))
                attn = torch.softmax(gram * scale, dim=-1)
            outputs.append(v @ attn.transpose(1, 2))  # (N, P, c)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)

    def _window_attention_maps(self, window: torch.Tensor) -> torch.Tensor:
        """Attention matrices of one TLC window: ``window`` ``(B, kh, kw, 3C)``, a strided view of the
        map -> ``(B, heads, c, c)`` (``softmax(q^T k * temperature / (|q_i| |k_j|))`` over its pixels).
        In half precision q and k are normalised before the product (see :meth:`_attend`)."""
        batch, channels = window.shape[0], window.shape[-1] // 3
        c_head = channels // self.num_heads
        low_precision = _is_half(window)
        if low_precision:
            # (B, kh, kw, 2C) unit q then k columns: the products below are cosines, bounded by 1.
            qk = _unit_columns(window[..., : 2 * channels].flatten(1, 2))
            qk = qk.reshape(batch, window.shape[1], window.shape[2], 2 * channels)
        else:
            qk = window
        grams: list[torch.Tensor] = []
        for b in range(batch):
            for head in range(self.num_heads):
                lo = head * c_head
                q = qk[b, :, :, lo : lo + c_head]  # (kh, kw, c)
                k = qk[b, :, :, channels + lo : channels + lo + c_head]
                # One product per window row, summed: reads the window in place instead of copying it out.
                grams.append((q.transpose(1, 2) @ k).sum(dim=0))
        gram = torch.stack(grams).reshape(batch, self.num_heads, c_head, c_head)
        temperature = self.temperature.reshape(1, self.num_heads, 1, 1)
        if low_precision:
            return torch.softmax(gram * temperature, dim=-1)
        norms = _norm_from_squares(window[..., : 2 * channels].square().sum(dim=(1, 2)))  # (B, 2C): q then k
        q_norm = norms[:, :channels].reshape(batch, self.num_heads, c_head)
        k_norm = norms[:, channels:].reshape(batch, self.num_heads, c_head)
        return torch.softmax(gram * (temperature / (q_norm.unsqueeze(3) * k_norm.unsqueeze(2))), dim=-1)

    def _attend_in_windows(self, tokens: torch.Tensor, rows: list[int], cols: list[int], size: tuple[int, int]) -> torch.Tensor:
        """TLC on ``tokens`` ``(B, H, W, 3C)``: attention inside every (row, col) window, overlaps
        averaged -> ``(B, H, W, C)``.

        A window's output at a pixel is ``v A_w^T``, linear in the attention matrix ``A_w``, so the
        average over the windows covering a pixel is ``v`` times their mean matrix. The map is built
        from the runs of pixels covered by the same windows, each multiplied once by its mean matrix:
        no window is copied out and no overlap is computed twice (equal to averaging the windows'
        outputs up to rounding).
        """
        batch, height, width, c3 = tokens.shape
        channels = c3 // 3
        c_head = channels // self.num_heads
        kh, kw = size
        maps: list[torch.Tensor] = []
        for r in rows:
            for c in cols:
                maps.append(self._window_attention_maps(tokens[:, r : r + kh, c : c + kw]))
        row_runs: list[torch.Tensor] = []
        for top, bottom, row_windows in window_segments(rows, kh, height):
            pieces: list[torch.Tensor] = []
            for left, right, col_windows in window_segments(cols, kw, width):
                total: Optional[torch.Tensor] = None
                for i in row_windows:
                    for j in col_windows:
                        window_map = maps[i * len(cols) + j]
                        total = window_map if total is None else total + window_map
                assert total is not None  # every pixel lies in at least one window
                count = len(row_windows) * len(col_windows)
                mean = total if count == 1 else total / count
                value = tokens[:, top:bottom, left:right, 2 * channels :]
                samples: list[torch.Tensor] = []
                for b in range(batch):
                    heads: list[torch.Tensor] = []
                    for head in range(self.num_heads):
                        lo = head * c_head
                        heads.append(value[b, :, :, lo : lo + c_head] @ mean[b, head].transpose(0, 1))
                    samples.append(heads[0] if len(heads) == 1 else torch.cat(heads, dim=-1))
                pieces.append(torch.stack(samples))
            row_runs.append(torch.cat(pieces, dim=2))
        return torch.cat(row_runs, dim=1)

    def forward(self, x: torch.Tensor, generated: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``; ``generated`` ``(B, 3C, 1, 3, 3)`` for adaptive blocks."""
        qkv = self._depthwise(self.qkv(x), generated)
        batch, c3, height, width = qkv.shape
        tokens = qkv.permute(0, 2, 3, 1)  # (B, H, W, 3C): a free view when qkv is channels-last
        window = self.local_window
        # Written as nested checks so TorchScript drops the window branch when the attribute is None.
        if window is not None:
            if height > window or width > window:
                size = (min(height, window), min(width, window))
                out = self._attend_in_windows(tokens, window_starts(height, window), window_starts(width, window), size)
                return self.project_out(out.permute(0, 3, 1, 2))
        # A single window covering the map is global attention.
        out = self._attend(tokens.reshape(batch, height * width, c3)).reshape(batch, height, width, c3 // 3)
        return self.project_out(out.permute(0, 3, 1, 2))


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
        gated = F.gelu(gate)
        # In place when no gradient is recorded: one less full-size allocation per block.
        gated = gated.mul_(value) if _may_work_in_place() else gated * value
        return self.project_out(gated)


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
        if not _may_work_in_place():
            x = x + self.attn(self.norm1(x), attn_kernel)
            return x + self.ffn(self.norm2(x), ffn_kernel)
        # Inference: add the residual into the freshly computed branch output instead of allocating.
        x = self.attn(self.norm1(x), attn_kernel).add_(x)
        return self.ffn(self.norm2(x), ffn_kernel).add_(x)


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
