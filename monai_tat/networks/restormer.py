"""Restormer (Zamir et al., CVPR 2022) as the TAT and AMIR papers use it: single channel, input residual."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from monai_tat.networks.blocks import Downsample, TransformerBlock, Upsample
from monai_tat.networks.padding import crop_to, pad_to_multiple

__all__ = ["Restormer", "make_level", "run_level", "check_trunk_arguments"]


def check_trunk_arguments(
    spatial_dims: int, dim: int, num_blocks: Sequence[int], heads: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Validate the arguments every trunk shares; returns ``num_blocks`` and ``heads`` as tuples."""
    if spatial_dims != 2:
        raise ValueError(f"spatial_dims must be 2 (these networks restore 2D slices), got {spatial_dims}.")
    num_blocks, heads = tuple(int(n) for n in num_blocks), tuple(int(h) for h in heads)
    if len(num_blocks) != 4 or len(heads) != 4:
        raise ValueError(f"num_blocks and heads need one entry per level (4), got {num_blocks} and {heads}.")
    if min(num_blocks) < 1 or dim < 2:
        raise ValueError(f"need dim >= 2 and at least one block per level, got dim={dim}, num_blocks={num_blocks}.")
    for level, head in enumerate(heads):
        if (dim * 2**level) % head:
            raise ValueError(f"level {level + 1} width {dim * 2 ** level} is not divisible by {head} heads.")
    return num_blocks, heads


def make_level(
    channels: int,
    num_blocks: int,
    num_heads: int,
    ffn_expansion_factor: float,
    adaptive: bool = False,
    local_window: Optional[int] = None,
) -> nn.ModuleList:
    """``num_blocks`` transformer blocks of one level, as a list (adaptive blocks take extra inputs)."""
    return nn.ModuleList(
        TransformerBlock(channels, num_heads, ffn_expansion_factor, adaptive=adaptive, local_window=local_window)
        for _ in range(num_blocks)
    )


def run_level(blocks: nn.ModuleList, x: torch.Tensor, *kernels: Optional[torch.Tensor]) -> torch.Tensor:
    """Run a level's blocks in order, passing the (optional) generated kernels to each."""
    for block in blocks:
        x = block(x, *kernels)
    return x


class Restormer(nn.Module):
    """Restormer, single-channel, as the baseline of the TAT and AMIR papers.

    Four-level U-shaped transformer: encoder levels at ``dim, 2dim, 4dim``, latent at ``8dim``,
    decoders back up (level-1 decoder and ``refinement`` at ``2dim``), output 3x3 conv plus the
    input image. Channel LayerNorm (not MONAI 1.6's InstanceNorm variant), so it loads the papers'
    checkpoints. The default configuration has 26,124,052 parameters.

    Args:
        spatial_dims: must be 2.
        in_channels: channels of the input slice.
        out_channels: channels of the output; the input is added when it equals ``in_channels``.
        dim: width of level 1.
        num_blocks: transformer blocks at levels 1-4.
        num_refinement_blocks: blocks of the refinement stage.
        heads: attention heads at levels 1-4 (level 1's are used by refinement).
        ffn_expansion_factor: GDFN hidden width factor.

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``, any H and W (padded to a
    multiple of 8 inside and cropped back).

    Example::

        net = Restormer()
        restored = net(torch.rand(1, 1, 128, 128))
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
    ) -> None:
        super().__init__()
        num_blocks, heads = check_trunk_arguments(spatial_dims, dim, num_blocks, heads)
        self.config: dict[str, Any] = dict(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, dim=dim,
            num_blocks=num_blocks, num_refinement_blocks=num_refinement_blocks, heads=heads,
            ffn_expansion_factor=ffn_expansion_factor,
        )  # fmt: skip
        ffn = ffn_expansion_factor
        self.patch_embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoder_level1 = make_level(dim, num_blocks[0], heads[0], ffn)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = make_level(dim * 2, num_blocks[1], heads[1], ffn)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = make_level(dim * 4, num_blocks[2], heads[2], ffn)
        self.down3_4 = Downsample(dim * 4)
        self.latent = make_level(dim * 8, num_blocks[3], heads[3], ffn)
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=False)
        self.decoder_level3 = make_level(dim * 4, num_blocks[2], heads[2], ffn)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=False)
        self.decoder_level2 = make_level(dim * 2, num_blocks[1], heads[1], ffn)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = make_level(dim * 2, num_blocks[0], heads[0], ffn)
        self.refinement = make_level(dim * 2, num_refinement_blocks, heads[0], ffn)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=False)
        self.add_input = in_channels == out_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``."""
        height, width = image.shape[-2:]
        x_in = pad_to_multiple(image, 8).contiguous(memory_format=torch.channels_last)
        enc1 = run_level(self.encoder_level1, self.patch_embed(x_in))
        enc2 = run_level(self.encoder_level2, self.down1_2(enc1))
        enc3 = run_level(self.encoder_level3, self.down2_3(enc2))
        latent = run_level(self.latent, self.down3_4(enc3))
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1))
        dec3 = run_level(self.decoder_level3, dec3)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1))
        dec2 = run_level(self.decoder_level2, dec2)
        dec1 = run_level(self.decoder_level1, torch.cat([self.up2_1(dec2), enc1], dim=1))
        out = self.output(run_level(self.refinement, dec1))
        if self.add_input:
            out = out + x_in
        return crop_to(out, height, width).contiguous()
