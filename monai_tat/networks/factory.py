"""Building the right network from a name or from a state dict alone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from monai_tat.errors import CheckpointMismatchError
from monai_tat.networks.amir import AMIR
from monai_tat.networks.reference import convert_reference_state_dict, is_reference_state_dict, load_checked_state_dict
from monai_tat.networks.restormer import Restormer
from monai_tat.networks.tat import LEGACY_ABLATION_PREFIX, TAT

__all__ = ["NETWORKS", "build_network", "network_config", "infer_network_config", "network_from_state_dict"]

NETWORKS: dict[str, type[nn.Module]] = {"TAT": TAT, "AMIR": AMIR, "Restormer": Restormer}


def build_network(name: str, **kwargs: Any) -> nn.Module:
    """``build_network("TAT", dim=16)``; the name is case-insensitive."""
    for key, cls in NETWORKS.items():
        if key.lower() == name.lower():
            return cls(**kwargs)
    raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}.")


def network_config(model: nn.Module) -> dict[str, Any]:
    """``{"name": "TAT", **constructor arguments}``: enough to rebuild ``model`` with :func:`build_network`."""
    name = type(model).__name__
    if name not in NETWORKS or not hasattr(model, "config"):
        raise ValueError(f"{name} is not a monai_tat network.")
    config = {key: list(value) if isinstance(value, tuple) else value for key, value in model.config.items()}
    return {"name": name, **config}


def _count_blocks(keys: list[str], level: str) -> int:
    indices = {int(m.group(1)) for key in keys if (m := re.match(rf"^{level}\.(\d+)\.", key))}
    return max(indices) + 1 if indices else 0


def _ffn_factor(state_dict: Mapping[str, torch.Tensor], widths: dict[str, int]) -> float:
    """A factor f with ``int(width * f) == hidden`` at every level (2.66 when it fits)."""
    hidden = {level: state_dict[f"{level}.0.ffn.project_out.weight"].shape[1] for level in widths}
    if all(int(widths[level] * 2.66) == hidden[level] for level in widths):
        return 2.66
    low = max(hidden[level] / widths[level] for level in widths)
    high = min((hidden[level] + 1) / widths[level] for level in widths)
    if low >= high:
        raise CheckpointMismatchError("the feed-forward widths of this checkpoint fit no single expansion factor.")
    return (low + high) / 2


def infer_network_config(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Architecture and constructor arguments of a native-naming state dict, read off its keys and shapes."""
    keys = list(state_dict)
    if any(key.startswith(LEGACY_ABLATION_PREFIX) for key in keys):
        # An older TAT(weight_generation=False) checkpoint; today's has the plain Restormer keys.
        inner = infer_network_config({key.removeprefix(LEGACY_ABLATION_PREFIX): value for key, value in state_dict.items()})
        return {**inner, "name": "TAT", "weight_generation": False}
    if "patch_embed.weight" not in state_dict or "output.weight" not in state_dict:
        raise CheckpointMismatchError(
            "this state dict is not a TAT, AMIR or Restormer checkpoint (no patch_embed / output weights); "
            f"its first keys are {keys[:5]}."
        )
    # The generate-all ablation nests a level's blocks one step deeper ("latent.blocks.0...").
    state_dict = {re.sub(r"^(\w+)\.blocks\.(\d+)\.", r"\1.\2.", key): value for key, value in state_dict.items()}
    keys = list(state_dict)
    dim, in_channels = state_dict["patch_embed.weight"].shape[:2]
    levels = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
    config: dict[str, Any] = {
        "in_channels": int(in_channels),
        "out_channels": int(state_dict["output.weight"].shape[0]),
        "dim": int(dim),
        "num_blocks": [_count_blocks(keys, level) for level in levels],
        "num_refinement_blocks": _count_blocks(keys, "refinement"),
        "heads": [int(state_dict[f"{level}.0.attn.temperature"].shape[0]) for level in levels],
        "ffn_expansion_factor": _ffn_factor(state_dict, {level: int(dim) * 2**i for i, level in enumerate(levels[:3])}),
    }
    if "tren.stem.weight" in state_dict:
        config["tren_dim"] = int(state_dict["tren.mlp.0.weight"].shape[0])
        if "tren.generators.latent_all.weight" in state_dict:
            config["generate_all_parameters"] = True
        return {"name": "TAT", **config}
    if "dict_generator.dictionary" in state_dict:
        dictionary = state_dict["dict_generator.dictionary"]
        config["dictionary_size"], config["instruction_dim"] = int(dictionary.shape[0]), int(dictionary.shape[1])
        config["num_experts"] = int(state_dict["spatial_routing_encoder_level1.w_gate"].shape[1])
        config["top_k"] = min(2, config["num_experts"])
        return {"name": "AMIR", **config}
    return {"name": "Restormer", **config}


def network_from_state_dict(state_dict: Mapping[str, torch.Tensor], **overrides: Any) -> nn.Module:
    """Build the TAT / AMIR / Restormer that ``state_dict`` (native or reference naming) belongs to,
    load it strictly, and return it in eval mode. ``overrides`` set arguments a state dict cannot
    tell (``tlc``, ``top_k``, ``combine``...)."""
    if is_reference_state_dict(state_dict):
        state_dict = convert_reference_state_dict(state_dict)
    config = infer_network_config(state_dict)
    config.update(overrides)
    model = build_network(config.pop("name"), **config)
    load_checked_state_dict(model, state_dict)
    return model.eval()
