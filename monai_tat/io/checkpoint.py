"""Reading network weights from disk without running arbitrary pickled code.

Supported: a MONAI bundle folder (``models/model.safetensors`` or ``models/model.pt``), a ``.pt`` /
``.pth`` state dict (``torch.load(weights_only=True)``; raw, or wrapped as ``{"params_ema" |
"params" | "state_dict" | "model" | "network": ...}`` as training frameworks save it) and a
``.safetensors`` file. The network configuration, when the file carries one, comes back beside the
weights so the caller can build the right architecture; this module knows nothing of networks.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from monai_tat.errors import UserInputError

__all__ = ["read_checkpoint", "WRAPPER_KEYS"]

# Keys under which frameworks nest the weights, most preferred first (EMA weights are the ones
# the papers evaluate).
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "network", "net")
CONFIG_KEYS = ("network_config", "config")
BUNDLE_WEIGHTS = ("models/model.safetensors", "models/model.pt", "models/model.pth")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Return ``(state_dict, network_config or None)`` from a checkpoint file or bundle folder.

    ``network_config`` is ``{"name": "TAT", **constructor kwargs}`` when the checkpoint says which
    network it holds (safetensors metadata, a JSON file beside it, or a bundle's ``network_def``).

    Raises:
        UserInputError: missing path, unreadable file, pickled objects other than tensors, or a
            file without a state dict.
    """
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"model checkpoint not found: {p}")
    if p.is_dir():
        return _read_bundle(p)
    if p.stat().st_size == 0:
        raise UserInputError(f"model checkpoint {p} is an empty file")
    if p.suffix.lower() == ".safetensors":
        state, config = _read_safetensors(p)
    else:
        state, config = _read_torch(p)
    return state, config or _sidecar_config(p)


def _read_bundle(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    for rel in BUNDLE_WEIGHTS:
        weights = folder / rel
        if weights.is_file():
            state, config = read_checkpoint(weights)
            return state, config or _bundle_network_def(folder)
    raise UserInputError(
        f"{folder} is a folder without {' or '.join(BUNDLE_WEIGHTS)}; pass a MONAI bundle folder or a checkpoint file"
    )


def _bundle_network_def(folder: Path) -> dict[str, Any] | None:
    """The network of a bundle's inference config, when it is a plain ``_target_`` with literal kwargs."""
    for name in ("inference.json", "train.json"):
        cfg_path = folder / "configs" / name
        if not cfg_path.is_file():
            continue
        try:
            net = json.loads(cfg_path.read_text(encoding="utf-8")).get("network_def")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(net, dict) and isinstance(net.get("_target_"), str):
            kwargs = {k: v for k, v in net.items() if not k.startswith("_")}
            # Values that reference other config entries ("@x", "$expr") cannot be used here.
            if all(not (isinstance(v, str) and v[:1] in "@$%") for v in kwargs.values()):
                return {"name": net["_target_"].rsplit(".", 1)[-1], **kwargs}
    return None


def _read_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserInputError(f"cannot read safetensors file {p} ({err})") from err
    config = None
    for key in CONFIG_KEYS:
        if key in metadata:
            config = _parse_config(metadata[key], f"metadata '{key}' of {p}")
            break
    return state, config


def _read_torch(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():  # refused for a reason other than a class to import: not a checkpoint
            raise UserInputError(f"cannot read checkpoint {p}: not a PyTorch state dict file") from err
        raise UserInputError(
            f"{p} holds Python objects other than tensors (for example a whole pickled model), which are "
            "not loaded for safety; save model.state_dict() with torch.save and pass that file"
        ) from err
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise UserInputError(f"cannot read checkpoint {p}: not a PyTorch file ({str(err).splitlines()[0]})") from err
    config = None
    if isinstance(obj, dict):
        for key in CONFIG_KEYS:
            if isinstance(obj.get(key), (dict, str)):
                config = _parse_config(obj[key], f"'{key}' in {p}")
                break
    return _unwrap_state_dict(obj, p), config


def _unwrap_state_dict(obj: Any, p: Path) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside a training checkpoint and strip wrapper prefixes."""
    for _ in range(3):  # e.g. {"state_dict": {"model": {...}}}
        if not isinstance(obj, dict):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserInputError(
            f"{p} holds no state dict (a mapping of parameter names to tensors, possibly under one of "
            f"{', '.join(WRAPPER_KEYS)}); pass the network's weights"
        )
    state = {str(k): v for k, v in obj.items()}
    for prefix in ("module.", "_orig_mod."):  # DataParallel / DDP and torch.compile wrappers
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _sidecar_config(p: Path) -> dict[str, Any] | None:
    """A network config stored as ``<stem>.json`` beside the weights (as the shipped demo weights)."""
    side = p.with_suffix(".json")
    if not side.is_file():
        return None
    try:
        return _parse_config(side.read_text(encoding="utf-8"), str(side))
    except OSError:
        return None


def _parse_config(raw: Any, where: str) -> dict[str, Any] | None:
    """Parse ``{"name": ..., **kwargs}`` (possibly nested under "network_config"/"network")."""
    try:
        cfg = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as err:
        raise UserInputError(f"network config in {where} is not valid JSON ({err})") from err
    if isinstance(cfg, dict):
        for key in ("network_config", "network"):
            if isinstance(cfg.get(key), dict):
                cfg = cfg[key]
                break
    if isinstance(cfg, dict) and isinstance(cfg.get("name"), str):
        return dict(cfg)
    return None
