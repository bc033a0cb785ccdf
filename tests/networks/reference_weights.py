"""Rebuild the reference checkpoints from the fixture recipe (../shared/reference/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def rebuild_reference_state_dict(recipe_path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """Every tensor from its seed, offset and scale; returns the state dict and ``num_values``."""
    recipe = json.loads(recipe_path.read_text())
    state_dict = {}
    for entry in recipe["entries"]:
        generator = torch.Generator().manual_seed(entry["seed"])
        noise = torch.randn(entry["shape"], generator=generator, dtype=torch.float32)
        state_dict[entry["key"]] = entry["offset"] + entry["scale"] * noise
    return state_dict, recipe["num_values"]
