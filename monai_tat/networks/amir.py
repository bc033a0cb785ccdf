"""AMIR: All-in-one Medical Image Restoration via task-adaptive routing (Yang et al., MICCAI 2024)."""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from monai_tat.networks.blocks import gdfn_hidden_channels
from monai_tat.networks.trunk import LEVEL_WIDTHS, RestormerTrunk

__all__ = [
    "AMIR",
    "RestorationInstructionNet",
    "SpatialRouting",
    "ChannelRouting",
    "coefficient_of_variation_sq",
    "SPATIALLY_ROUTED_LEVELS",
    "CHANNEL_ROUTED_LEVELS",
]

#: Levels preceded by a spatial routing module (``spatial_routing_<level>``), in run order.
SPATIALLY_ROUTED_LEVELS = ("encoder_level1", "encoder_level2", "encoder_level3")
#: Levels preceded by a channel routing module (``channel_routing_<level>``), in run order.
CHANNEL_ROUTED_LEVELS = ("latent", "decoder_level3", "decoder_level2", "decoder_level1")


class RestorationInstructionNet(nn.Module):
    """RIN: a per-sample restoration instruction from the degraded image.

    Strided convolutions (k3 s3, no padding) with LeakyReLU(0.1), 1x1 convolutions, global average
    pooling, then a softmax over ``dictionary_size`` atoms weights a learnable dictionary
    ``(dictionary_size, instruction_dim)``; GELU gives the instruction ``(B, instruction_dim)``.
    """

    def __init__(self, in_channels: int = 1, dictionary_size: int = 32, instruction_dim: int = 256, width: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=3),
            nn.LeakyReLU(0.1),
            nn.Conv2d(width, width, 3, stride=3),
            nn.LeakyReLU(0.1),
            nn.Conv2d(width, width, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(width, width, 1),
            nn.LeakyReLU(0.1),
            nn.Conv2d(width, 32, 1),
        )
        self.to_weights = nn.Linear(32, dictionary_size)
        self.dictionary = nn.Parameter(torch.randn(dictionary_size, instruction_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` with H, W >= 9 -> instruction ``(B, instruction_dim)``."""
        pooled = self.features(image).mean(dim=(-2, -1))
        atom_weights = torch.softmax(self.to_weights(pooled), dim=-1)
        return F.gelu(atom_weights @ self.dictionary)


def coefficient_of_variation_sq(values: torch.Tensor) -> torch.Tensor:
    """``var(values, unbiased) / (mean(values)^2 + 1e-10)``: the MoE balance measure (0 for one value)."""
    if values.numel() <= 1:
        return torch.zeros((), dtype=values.dtype, device=values.device)
    return values.var() / (values.mean() ** 2 + 1e-10)


class SpatialRouting(nn.Module):
    """SRM: per-pixel noisy top-k mixture of experts conditioned on the instruction.

    For every pixel token ``x`` (C values) the gate sees ``[x, fc(instruction)]``; ``top_k`` of
    ``num_experts`` experts (``Linear(C, int(C*2.66))``, GELU, ``Linear(.., C)``) are mixed with a
    softmax over their logits. Output ``x + y``. Gaussian gate noise (Shazeer et al., 2017) only in
    training. The balance loss ``cv2(importance) + cv2(load)`` is returned with the output.

    ``combine="reference"`` (default) mixes as the reference does,
    ``y = log(sum_e g_e exp(E_e(x)))``, computed in the log domain (``logsumexp`` of
    ``log g_e + E_e``) so it neither overflows nor differentiates through ``log(0)``;
    ``combine="sum"`` is the paper's eq. 3, ``y = sum_e g_e E_e(x)``.

    Routing has no data-dependent shapes: all experts run on all tokens and the top-k are gathered,
    so a traced network routes correctly for any input.
    """

    def __init__(
        self,
        channels: int,
        instruction_dim: int = 256,
        num_experts: int = 4,
        top_k: int = 2,
        ffn_expansion_factor: float = 2.66,
        combine: str = "reference",
    ) -> None:
        super().__init__()
        if combine not in ("reference", "sum"):
            raise ValueError(f"combine must be 'reference' or 'sum', got {combine!r}.")
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"need 1 <= top_k <= num_experts, got top_k={top_k}, num_experts={num_experts}.")
        self.channels, self.num_experts, self.top_k, self.combine = channels, num_experts, top_k, combine
        self.fc = nn.Linear(instruction_dim, channels)
        self.w_gate = nn.Parameter(torch.randn(2 * channels, num_experts))
        self.w_noise = nn.Parameter(torch.zeros(2 * channels, num_experts))
        # The reference keeps the standard normal's parameters as buffers (they are in its checkpoints).
        self.register_buffer("normal_mean", torch.zeros(1))
        self.register_buffer("normal_std", torch.ones(1))
        hidden = gdfn_hidden_channels(channels, ffn_expansion_factor)
        self.experts = nn.ModuleList(
            nn.ModuleDict({"fc1": nn.Linear(channels, hidden), "fc2": nn.Linear(hidden, channels)}) for _ in range(num_experts)
        )

    def _experts_dense(self, tokens: torch.Tensor) -> torch.Tensor:
        """All experts on all tokens: ``(N, C)`` -> ``(N, E, C)`` as two batched matrix products."""
        w1_parts: list[torch.Tensor] = []
        b1_parts: list[torch.Tensor] = []
        w2_parts: list[torch.Tensor] = []
        b2_parts: list[torch.Tensor] = []
        for expert in self.experts:  # loops, not comprehensions, so TorchScript compiles them
            w1_parts.append(expert["fc1"].weight)
            b1_parts.append(expert["fc1"].bias)
            w2_parts.append(expert["fc2"].weight)
            b2_parts.append(expert["fc2"].bias)
        w1 = torch.cat(w1_parts)  # (E*h, C)
        b1 = torch.cat(b1_parts)
        hidden = F.gelu(F.linear(tokens, w1, b1))  # (N, E*h)
        hidden = hidden.reshape(tokens.shape[0], self.num_experts, -1).transpose(0, 1)  # (E, N, h)
        w2 = torch.stack(w2_parts)  # (E, C, h)
        b2 = torch.stack(b2_parts)  # (E, C)
        out = torch.baddbmm(b2.unsqueeze(1), hidden, w2.transpose(1, 2))  # (E, N, C)
        return out.transpose(0, 1)

    def _normal_cdf(self, value: torch.Tensor) -> torch.Tensor:
        """CDF of the normal with the buffers' mean and std (``torch.distributions.Normal.cdf``'s formula)."""
        return 0.5 * (1 + torch.erf((value - self.normal_mean) * self.normal_std.reciprocal() / math.sqrt(2)))

    def _load_in_training(self, clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor) -> torch.Tensor:
        """Expected number of tokens routed to each expert under the gate noise (smooth, for the loss)."""
        top_values = noisy.topk(min(self.top_k + 1, self.num_experts), dim=-1).values
        if self.top_k == self.num_experts:
            return torch.ones_like(clean).sum(0)
        # An expert is in the top-k if its noisy logit beats the k-th best of the others.
        threshold_if_in = top_values[:, self.top_k : self.top_k + 1]
        threshold_if_out = top_values[:, self.top_k - 1 : self.top_k]
        is_in = noisy > threshold_if_in
        prob_if_in = self._normal_cdf((clean - threshold_if_in) / noise_std)
        prob_if_out = self._normal_cdf((clean - threshold_if_out) / noise_std)
        return torch.where(is_in, prob_if_in, prob_if_out).sum(0)

    def forward(self, x: torch.Tensor, instruction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, C, H, W)``, ``instruction`` ``(B, D)`` -> (``(B, C, H, W)``, balance loss scalar)."""
        batch, channels, height, width = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(-1, channels)  # (N, C), N = B*H*W
        condition = self.fc(instruction)  # (B, C)
        # [x, d] @ w_gate, with the instruction half computed once per sample.
        cond_logits = (condition @ self.w_gate[channels:]).repeat_interleave(height * width, dim=0)
        clean_logits = tokens @ self.w_gate[:channels] + cond_logits
        noise_std: Optional[torch.Tensor] = None  # set only in training
        if self.training:
            cond_noise = (condition @ self.w_noise[channels:]).repeat_interleave(height * width, dim=0)
            noise_std = F.softplus(tokens @ self.w_noise[:channels] + cond_noise) + 0.01
            logits = clean_logits + torch.randn_like(clean_logits) * noise_std
        else:
            logits = clean_logits
        top_logits, top_index = logits.topk(self.top_k, dim=-1)  # (N, k)
        top_log_gates = torch.log_softmax(top_logits, dim=-1)
        top_gates = top_log_gates.exp()
        # The gates' own dtype: under CUDA autocast log_softmax / exp run in float32 while logits stay half.
        gates = top_gates.new_zeros(logits.shape).scatter(1, top_index, top_gates)  # (N, E)

        expert_out = self._experts_dense(tokens)  # (N, E, C)
        chosen = expert_out.gather(1, top_index.unsqueeze(-1).expand(-1, -1, channels))  # (N, k, C)
        if self.combine == "reference":
            mixed = torch.logsumexp(top_log_gates.unsqueeze(-1) + chosen, dim=1)
        else:
            mixed = (top_gates.unsqueeze(-1) * chosen).sum(dim=1)
        y = mixed.reshape(batch, height, width, channels).permute(0, 3, 1, 2)

        importance = gates.sum(0)
        if noise_std is not None:
            load = self._load_in_training(clean_logits, logits, noise_std)
        else:
            load = (gates > 0).to(gates.dtype).sum(0)
        balance = coefficient_of_variation_sq(importance) + coefficient_of_variation_sq(load)
        return x + y, balance


class ChannelRouting(nn.Module):
    """CRM: ``x + (x * gamma + beta) * sigmoid(fc(instruction))`` per channel (gamma, beta start at 0)."""

    def __init__(self, channels: int, instruction_dim: int = 256) -> None:
        super().__init__()
        self.fc = nn.Linear(instruction_dim, channels)
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        mask = torch.sigmoid(self.fc(instruction))[:, :, None, None]
        return x + (x * self.gamma + self.beta) * mask


class AMIR(RestormerTrunk):
    """AMIR (MICCAI 2024): a Restormer trunk routed by a restoration instruction.

    RIN turns the degraded image into an instruction; spatial routing modules (SRM, noisy top-2 of
    4 experts per pixel) precede encoder levels 1-3, channel routing modules (CRM) precede the
    latent and decoder levels 3-1. Default: the reference configuration (dim 42, blocks
    (5, 7, 7, 9), 32 dictionary atoms), 23,540,504 state-dict values.

    In training mode ``forward`` returns ``(image, balance_loss)`` (train with
    ``L1 + 0.001 * balance_loss``); in eval mode the image.

    Args:
        spatial_dims, in_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads,
            ffn_expansion_factor: the trunk (see :class:`~monai_tat.networks.Restormer`).
        dictionary_size: RIN atoms (32 in the reference code, 16 in the paper).
        instruction_dim: instruction width (256).
        num_experts, top_k: SRM experts and how many each pixel uses.
        combine: ``"reference"`` (log-sum-exp mixing of the reference code) or ``"sum"`` (paper eq. 3).

    Shapes: ``(B, in_channels, H, W)`` -> ``(B, out_channels, H, W)``, any H, W >= 9.

    Example::

        net = AMIR().eval()
        with torch.no_grad():
            restored = net(torch.rand(1, 1, 256, 256))
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        dim: int = 42,
        num_blocks: Sequence[int] = (5, 7, 7, 9),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        dictionary_size: int = 32,
        instruction_dim: int = 256,
        num_experts: int = 4,
        top_k: int = 2,
        combine: str = "reference",
    ) -> None:
        own_config = dict(
            dictionary_size=dictionary_size, instruction_dim=instruction_dim, num_experts=num_experts,
            top_k=top_k, combine=combine,
        )  # fmt: skip
        super().__init__(spatial_dims, in_channels, out_channels, dim, num_blocks, num_refinement_blocks, heads, ffn_expansion_factor, own_config)
        self.dict_generator = RestorationInstructionNet(in_channels, dictionary_size, instruction_dim)
        srm = dict(instruction_dim=instruction_dim, num_experts=num_experts, top_k=top_k, ffn_expansion_factor=ffn_expansion_factor, combine=combine)
        for level in SPATIALLY_ROUTED_LEVELS:
            setattr(self, f"spatial_routing_{level}", SpatialRouting(dim * LEVEL_WIDTHS[level], **srm))
        for level in CHANNEL_ROUTED_LEVELS:
            setattr(self, f"channel_routing_{level}", ChannelRouting(dim * LEVEL_WIDTHS[level], instruction_dim))

    def _condition(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The instruction ``(B, instruction_dim)`` from the degraded image; the spatial routing
        modules add their balance losses under ``"balance"``."""
        return {"instruction": self.dict_generator(image)}

    def _enter_level(self, name: str, x: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> torch.Tensor:
        """Route ``x`` before level ``name``: SRM before encoder levels 1-3, CRM before the latent and
        decoders. (One branch per module: TorchScript cannot look modules up by a run-time name.)"""
        instruction = conditioning["instruction"]
        if name == "encoder_level1":
            x, balance = self.spatial_routing_encoder_level1(x, instruction)
        elif name == "encoder_level2":
            x, balance = self.spatial_routing_encoder_level2(x, instruction)
        elif name == "encoder_level3":
            x, balance = self.spatial_routing_encoder_level3(x, instruction)
        elif name == "latent":
            return self.channel_routing_latent(x, instruction)
        elif name == "decoder_level3":
            return self.channel_routing_decoder_level3(x, instruction)
        elif name == "decoder_level2":
            return self.channel_routing_decoder_level2(x, instruction)
        elif name == "decoder_level1":
            return self.channel_routing_decoder_level1(x, instruction)
        else:
            return x
        # summed in run order, level 1 first
        conditioning["balance"] = conditioning["balance"] + balance if "balance" in conditioning else balance
        return x

    def _result(self, restored: torch.Tensor, conditioning: dict[str, torch.Tensor]) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The image, with the summed balance loss of the spatial routing in training mode."""
        if not self.training:
            return restored
        return restored, conditioning["balance"]
