"""The Restormer trunk that Restormer, TAT and AMIR share, with hooks for what each adds.

One U-shaped transformer (Zamir et al., CVPR 2022): patch embedding, encoder levels at ``dim, 2dim,
4dim``, the latent at ``8dim``, decoders back up with pixel-shuffle upsampling, concatenation of the
encoder skip and a 1x1 channel reduction (none at level 1, which stays at ``2dim``), a refinement
stage, an output 3x3 convolution and the input residual. The subclasses differ only in

- which blocks a level holds (:meth:`RestormerTrunk._make_level`: TAT's weight-adaptive blocks and
  local windows),
- what conditions the levels at run time (:meth:`~RestormerTrunk._condition` on the image, AMIR's
  instruction; :meth:`~RestormerTrunk._before_latent` on the latent input, TAT's TREN kernels;
  :meth:`~RestormerTrunk._enter_level`, AMIR's routing before a level; TAT's levels read their
  kernels from the conditioning),
- the head after the refinement (:meth:`~RestormerTrunk._build_head`, :meth:`~RestormerTrunk._head`:
  TAT's 5*dim fusion) and what ``forward`` returns (:meth:`~RestormerTrunk._result`: AMIR's
  balance loss in training).

Module names are the reference implementations' (``encoder_level1``, ``down1_2``,
``reduce_chan_level3``...), so state-dict keys map one to one onto their checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional, Sequence

import torch
from torch import nn

from monai_tat.networks.blocks import Downsample, TransformerBlock, Upsample
from monai_tat.networks.padding import crop_to, pad_to_multiple
from monai_tat.networks.tracing import check_traced_size

__all__ = ["RestormerTrunk", "BlockLevel", "LEVEL_WIDTHS", "make_level", "check_trunk_arguments"]

#: Width of every level as a multiple of ``dim``, in the order the trunk runs them.
LEVEL_WIDTHS: dict[str, int] = {
    "encoder_level1": 1,
    "encoder_level2": 2,
    "encoder_level3": 4,
    "latent": 8,
    "decoder_level3": 4,
    "decoder_level2": 2,
    "decoder_level1": 2,
    "refinement": 2,
}


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


class BlockLevel(nn.ModuleList):
    """The transformer blocks of one level, run in order (a list, so state-dict keys stay ``<level>.<i>.``).

    ``kernel_source`` names the TAT generator whose per-sample depthwise kernels the blocks take
    from the conditioning (``<source>_attn``, ``<source>_ffn``); empty for plain blocks.
    """

    def __init__(self, blocks: Sequence[nn.Module], kernel_source: str = "") -> None:
        super().__init__(blocks)
        self.kernel_source = kernel_source

    def forward(self, x: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``; ``conditioning`` the trunk's per-forward tensors."""
        attn_kernel: Optional[torch.Tensor] = None
        ffn_kernel: Optional[torch.Tensor] = None
        if self.kernel_source != "":
            attn_kernel = conditioning[self.kernel_source + "_attn"]
            ffn_kernel = conditioning[self.kernel_source + "_ffn"]
        for block in self:
            x = block(x, attn_kernel, ffn_kernel)
        return x


def make_level(
    channels: int,
    num_blocks: int,
    num_heads: int,
    ffn_expansion_factor: float,
    adaptive: bool = False,
    local_window: Optional[int] = None,
    kernel_source: str = "",
) -> BlockLevel:
    """``num_blocks`` transformer blocks of one level (``kernel_source``: see :class:`BlockLevel`)."""
    return BlockLevel(
        [TransformerBlock(channels, num_heads, ffn_expansion_factor, adaptive=adaptive, local_window=local_window)
         for _ in range(num_blocks)],
        kernel_source,
    )  # fmt: skip


class RestormerTrunk(nn.Module):
    """The shared four-level trunk; subclasses add to it through the hook methods.

    Args:
        spatial_dims: must be 2.
        in_channels: channels of the input slice.
        out_channels: channels of the output; the input is added when it equals ``in_channels``.
        dim: width of level 1.
        num_blocks: transformer blocks at levels 1-4 (the decoders mirror levels 1-3).
        num_refinement_blocks: blocks of the refinement stage.
        heads: attention heads at levels 1-4 (level 1's are used by refinement).
        ffn_expansion_factor: GDFN hidden width factor.
        extra_config: the subclass's own constructor arguments; recorded in ``config`` after the
            trunk's, before any level is built, so the construction hooks can read them.

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``, any H and W (padded to a
    multiple of 8 inside and cropped back). A traced network refuses other sizes than its own.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        dim: int,
        num_blocks: Sequence[int],
        num_refinement_blocks: int,
        heads: Sequence[int],
        ffn_expansion_factor: float,
        extra_config: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        num_blocks, heads = check_trunk_arguments(spatial_dims, dim, num_blocks, heads)
        self.config: dict[str, Any] = dict(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, dim=dim,
            num_blocks=num_blocks, num_refinement_blocks=num_refinement_blocks, heads=heads,
            ffn_expansion_factor=ffn_expansion_factor, **(extra_config or {}),
        )  # fmt: skip
        self.traced_size: Optional[tuple[int, int]] = None
        # Built in the reference's order, so state dicts list their keys as its checkpoints do.
        level = self._make_level
        self.patch_embed = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.encoder_level1 = level("encoder_level1", dim, num_blocks[0], heads[0])
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = level("encoder_level2", dim * 2, num_blocks[1], heads[1])
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = level("encoder_level3", dim * 4, num_blocks[2], heads[2])
        self.down3_4 = Downsample(dim * 4)
        self.latent = level("latent", dim * 8, num_blocks[3], heads[3])
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=False)
        self.decoder_level3 = level("decoder_level3", dim * 4, num_blocks[2], heads[2])
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=False)
        self.decoder_level2 = level("decoder_level2", dim * 2, num_blocks[1], heads[1])
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = level("decoder_level1", dim * 2, num_blocks[0], heads[0])
        self.refinement = level("refinement", dim * 2, num_refinement_blocks, heads[0])
        self._build_head()
        self.add_input = in_channels == out_channels

    # --- construction hooks -------------------------------------------------------------------

    def _make_level(self, name: str, channels: int, num_blocks: int, num_heads: int) -> nn.Module:
        """The blocks of level ``name`` (a key of :data:`LEVEL_WIDTHS`); plain transformer blocks."""
        return make_level(channels, num_blocks, num_heads, self.config["ffn_expansion_factor"])

    def _build_head(self) -> None:
        """Modules after the refinement stage: the output 3x3 convolution from ``2*dim`` channels."""
        self.output = nn.Conv2d(self.config["dim"] * 2, self.config["out_channels"], 3, padding=1, bias=False)

    def upgrade_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
        """Rename the keys of an older layout of this network's state dict (none: unchanged)."""
        return state_dict

    # --- forward hooks (TorchScript compiles the concrete class's overrides) --------------------

    def _condition(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-forward tensors computed from the unpadded image ``(B, C, H, W)``, handed to every
        later hook and level (mutable: hooks may add to it). Nothing by default."""
        conditioning: dict[str, torch.Tensor] = {}
        return conditioning

    def _before_latent(self, latent_input: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> None:
        """Called with the latent input ``(B, 8*dim, H/8, W/8)`` before the latent level runs."""
        return None

    def _enter_level(self, name: str, x: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> torch.Tensor:
        """What reaches level ``name`` (a key of :data:`LEVEL_WIDTHS`): ``x`` unchanged by default."""
        return x

    def _head(self, encoded1: torch.Tensor, decoded1: torch.Tensor, refined: torch.Tensor) -> torch.Tensor:
        """The restored residual from the level-1 features (all at full resolution)."""
        return self.output(refined)

    def _result(self, restored: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> Any:
        """What ``forward`` returns; the restored image by default."""
        return restored

    # ------------------------------------------------------------------------------------------

    def forward(self, image: torch.Tensor) -> Any:
        """``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)`` (subclasses may add outputs)."""
        if not torch.jit.is_scripting():
            image = check_traced_size(self, image)
        height, width = image.shape[-2], image.shape[-1]
        cond = self._condition(image)
        x_in = pad_to_multiple(image, 8).contiguous(memory_format=torch.channels_last)
        enc1 = self.encoder_level1(self._enter_level("encoder_level1", self.patch_embed(x_in), cond), cond)
        enc2 = self.encoder_level2(self._enter_level("encoder_level2", self.down1_2(enc1), cond), cond)
        enc3 = self.encoder_level3(self._enter_level("encoder_level3", self.down2_3(enc2), cond), cond)
        latent_input = self.down3_4(enc3)
        self._before_latent(latent_input, cond)
        latent = self.latent(self._enter_level("latent", latent_input, cond), cond)
        dec3 = self.reduce_chan_level3(torch.cat([self.up4_3(latent), enc3], dim=1))
        dec3 = self.decoder_level3(self._enter_level("decoder_level3", dec3, cond), cond)
        dec2 = self.reduce_chan_level2(torch.cat([self.up3_2(dec3), enc2], dim=1))
        dec2 = self.decoder_level2(self._enter_level("decoder_level2", dec2, cond), cond)
        dec1 = torch.cat([self.up2_1(dec2), enc1], dim=1)
        dec1 = self.decoder_level1(self._enter_level("decoder_level1", dec1, cond), cond)
        refined = self.refinement(self._enter_level("refinement", dec1, cond), cond)
        out = self._head(enc1, dec1, refined)
        if self.add_input:
            out = out + x_in
        return self._result(crop_to(out, height, width).contiguous(), cond)
