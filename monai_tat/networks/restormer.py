"""Restormer (Zamir et al., CVPR 2022) as the TAT and AMIR papers use it: single channel, input residual."""

from __future__ import annotations

from typing import Sequence

from monai_tat.networks.trunk import RestormerTrunk

__all__ = ["Restormer"]


class Restormer(RestormerTrunk):
    """Restormer, single-channel, as the baseline of the TAT and AMIR papers.

    Four-level U-shaped transformer: encoder levels at ``dim, 2dim, 4dim``, latent at ``8dim``,
    decoders back up (level-1 decoder and ``refinement`` at ``2dim``), output 3x3 conv plus the
    input image. Channel LayerNorm (not MONAI 1.6's InstanceNorm variant), so it loads the papers'
    checkpoints. The default configuration has 26,124,052 parameters. It is the plain
    :class:`~monai_tat.networks.trunk.RestormerTrunk`.

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
        super().__init__(spatial_dims, in_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor)
