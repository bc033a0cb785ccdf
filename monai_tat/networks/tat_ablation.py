"""TAT's "generate all parameters of the block" ablation (paper Table 3, 663 M parameters).

Every convolution weight of an adaptive block becomes ``W_shared + lambda * W_generated[b]``,
with ``lambda`` per output channel (zero at start) and one generated vector per level shared by the
level's blocks, as the depthwise kernels are in the main model. Research code: it runs the batch
one sample at a time through ``torch.func.functional_call``, which is simple and obviously
per-sample, not fast.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.func import functional_call

from monai_tat.networks.blocks import TransformerBlock

__all__ = ["FullyAdaptiveLevel"]

#: The convolution weights of a block that are generated, by parameter name.
GENERATED_WEIGHTS = (
    "attn.qkv.weight",
    "attn.qkv_dwconv.weight",
    "attn.project_out.weight",
    "ffn.project_in.weight",
    "ffn.dwconv.weight",
    "ffn.project_out.weight",
)


class FullyAdaptiveLevel(nn.Module):
    """A level of blocks whose every convolution weight is generated per sample.

    Args:
        channels, num_blocks, num_heads, ffn_expansion_factor, local_window: as
            :func:`~monai_tat.networks.trunk.make_level`.

    ``generated_numel`` is the length of the generated vector this level consumes; it reads it from
    the trunk's conditioning under ``<kernel_source>_all``. Not TorchScript-scriptable
    (``functional_call``); trace it instead.
    """

    def __init__(
        self,
        channels: int,
        num_blocks: int,
        num_heads: int,
        ffn_expansion_factor: float,
        local_window: Optional[int] = None,
        kernel_source: str = "",
    ) -> None:
        super().__init__()
        self.kernel_source = kernel_source
        self.blocks = nn.ModuleList(
            TransformerBlock(channels, num_heads, ffn_expansion_factor, local_window=local_window) for _ in range(num_blocks)
        )
        params = dict(self.blocks[0].named_parameters())
        self.shapes = {name: tuple(params[name].shape) for name in GENERATED_WEIGHTS}
        self.generated_numel = sum(torch.Size(shape).numel() for shape in self.shapes.values())
        self.scales = nn.ModuleList(
            nn.ParameterDict(
                {name.replace(".", "_"): nn.Parameter(torch.zeros(shape[0], 1, 1, 1)) for name, shape in self.shapes.items()}
            )
            for _ in range(num_blocks)
        )

    def forward(self, x: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> torch.Tensor:
        """``x`` ``(B, C, H, W)``, ``conditioning[kernel_source + "_all"]`` ``(B, generated_numel)`` -> ``(B, C, H, W)``."""
        generated = conditioning[self.kernel_source + "_all"]
        outputs = []
        for sample, vector in zip(x.split(1), generated):
            pieces = dict(zip(self.shapes, vector.split([torch.Size(s).numel() for s in self.shapes.values()])))
            for block, scales in zip(self.blocks, self.scales):
                own = dict(block.named_parameters())
                weights = {
                    name: own[name] + scales[name.replace(".", "_")] * pieces[name].reshape(shape)
                    for name, shape in self.shapes.items()
                }
                sample = functional_call(block, weights, (sample,), strict=False)
            outputs.append(sample)
        return torch.cat(outputs)
