"""Loading checkpoints written in the authors' reference key naming.

The reference TAT / AMIR code names modules differently from this package (``norm1.body.weight``,
``down1_2.body.0.weight``, ``tren.E.0.weight``, ``dict_generator.CondNet.0.weight``,
``spatial_routing_encoder_level1.moe.w_gate``...). Every tensor has the same shape and meaning, so
conversion is a renaming; this module owns it, in both directions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from monai_tat.errors import CheckpointMismatchError

__all__ = [
    "REFERENCE_TO_NATIVE",
    "is_reference_state_dict",
    "reference_to_native_key",
    "native_to_reference_key",
    "convert_reference_state_dict",
    "load_reference_state_dict",
    "load_checked_state_dict",
]

#: (reference pattern, native replacement), applied in order to every key.
REFERENCE_TO_NATIVE: tuple[tuple[str, str], ...] = (
    (r"^patch_embed\.proj\.", "patch_embed."),
    (r"\.norm([12])\.body\.", r".norm\1."),
    (r"^(down\d_\d|up\d_\d)\.body\.0\.", r"\1.conv."),
    (r"^reduce_final\.", "fusion."),
    (r"^tren\.E\.0\.", "tren.stem."),
    (r"^tren\.E\.2\.body\.0\.", "tren.res_blocks.0.conv1."),
    (r"^tren\.E\.2\.body\.2\.", "tren.res_blocks.0.conv2."),
    (r"^tren\.E\.3\.body\.0\.", "tren.res_blocks.1.conv1."),
    (r"^tren\.E\.3\.body\.2\.", "tren.res_blocks.1.conv2."),
    (r"^tren\.E\.4\.", "tren.expand.0."),
    (r"^tren\.E\.6\.", "tren.expand.2."),
    (r"^tren\.E\.8\.", "tren.expand.4."),
    (r"^tren\.kernel_(\w+?)\.0\.", r"tren.generators.\1."),
    (r"^dict_generator\.CondNet\.", "dict_generator.features."),
    (r"^dict_generator\.lastOut\.", "dict_generator.to_weights."),
    (r"\.moe\.mean$", ".normal_mean"),
    (r"\.moe\.std$", ".normal_std"),
    (r"\.moe\.", "."),
)

#: The inverse renaming, for writing checkpoints the reference code can read.
NATIVE_TO_REFERENCE: tuple[tuple[str, str], ...] = (
    (r"^patch_embed\.", "patch_embed.proj."),
    (r"\.norm([12])\.(weight|bias)$", r".norm\1.body.\2"),
    (r"^(down\d_\d|up\d_\d)\.conv\.", r"\1.body.0."),
    (r"^fusion\.", "reduce_final."),
    (r"^tren\.stem\.", "tren.E.0."),
    (r"^tren\.res_blocks\.0\.conv1\.", "tren.E.2.body.0."),
    (r"^tren\.res_blocks\.0\.conv2\.", "tren.E.2.body.2."),
    (r"^tren\.res_blocks\.1\.conv1\.", "tren.E.3.body.0."),
    (r"^tren\.res_blocks\.1\.conv2\.", "tren.E.3.body.2."),
    (r"^tren\.expand\.0\.", "tren.E.4."),
    (r"^tren\.expand\.2\.", "tren.E.6."),
    (r"^tren\.expand\.4\.", "tren.E.8."),
    (r"^tren\.generators\.(\w+?)\.", r"tren.kernel_\1.0."),
    (r"^dict_generator\.features\.", "dict_generator.CondNet."),
    (r"^dict_generator\.to_weights\.", "dict_generator.lastOut."),
    (r"^(spatial_routing_\w+)\.normal_mean$", r"\1.moe.mean"),
    (r"^(spatial_routing_\w+)\.normal_std$", r"\1.moe.std"),
    (r"^(spatial_routing_\w+)\.(w_gate|w_noise|experts\..*)$", r"\1.moe.\2"),
)

_REFERENCE_MARKERS = ("patch_embed.proj.weight", ".norm1.body.weight", "tren.E.0.weight", "dict_generator.CondNet.0.weight")


def _rename(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def reference_to_native_key(key: str) -> str:
    """Native name of a reference checkpoint key (unknown keys pass through unchanged)."""
    return _rename(key, REFERENCE_TO_NATIVE)


def native_to_reference_key(key: str) -> str:
    """Reference name of a native key."""
    return _rename(key, NATIVE_TO_REFERENCE)


def is_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True when the keys follow the authors' naming (e.g. ``patch_embed.proj.weight``)."""
    return any(marker in key for key in state_dict for marker in _REFERENCE_MARKERS)


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename every key of a reference-format state dict to this package's naming."""
    return {reference_to_native_key(key): value for key, value in state_dict.items()}


def load_checked_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict`` that refuses any missing, unexpected or mis-shaped tensor with a
    :class:`CheckpointMismatchError` naming them (a checkpoint of another architecture or size).
    Keys of an older layout of the model's own state dict are renamed first (``upgrade_state_dict``)."""
    upgrade = getattr(model, "upgrade_state_dict", None)
    if upgrade is not None:
        state_dict = upgrade(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(
        f"{key} {tuple(state_dict[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or wrong_shape:

        def listing(keys: list[str]) -> str:
            """Counts per top-level module, then the first few keys: readable for hundreds of keys."""
            if not keys:
                return "none"
            modules: dict[str, int] = {}
            for key in keys:
                modules[key.split(".")[0]] = modules.get(key.split(".")[0], 0) + 1
            per_module = ", ".join(f"{name} ({count})" for name, count in modules.items())
            return f"{len(keys)} under {per_module}, e.g. " + ", ".join(keys[:3])

        raise CheckpointMismatchError(
            f"the {source} does not fit this {type(model).__name__}: "
            f"missing keys: {listing(missing)}; unexpected keys: {listing(unexpected)}; "
            f"wrong shapes: {listing(wrong_shape)}. It was probably saved from another architecture or size; "
            "build the matching network (monai_tat.networks.network_from_state_dict does it for you)."
        )
    model.load_state_dict(dict(state_dict), strict=True)


def load_reference_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a state dict in the authors' reference key naming into ``model`` (TAT, AMIR, Restormer).

    Values are copied into the model's own dtype and device. Raises
    :class:`~monai_tat.errors.CheckpointMismatchError` naming missing and unexpected keys when the
    checkpoint belongs to another architecture or configuration. Returns ``model``.
    """
    load_checked_state_dict(model, convert_reference_state_dict(state_dict), source="reference checkpoint")
    return model
