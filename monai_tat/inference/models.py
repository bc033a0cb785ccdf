"""Loading a restoration network: shipped demo weights or a user's checkpoint, never arbitrary pickle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_tat.errors import CheckpointMismatchError, UserInputError
from monai_tat.inference.devices import resolve_device
from monai_tat.io import read_checkpoint

__all__ = ["load_model", "model_path", "DEMO_MODELS", "WEIGHTS_DIR", "demo_weights_path"]

DEMO_MODELS = ("tat", "amir")
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def demo_weights_path(name: str) -> Path:
    """Where the shipped demo weights of ``name`` ("tat" or "amir") live (may not exist)."""
    return WEIGHTS_DIR / f"{name.lower()}_demo.safetensors"


def model_path(spec: str | Path) -> Path:
    """The file or bundle folder a model spec names, checked to exist (cheap: nothing is read).

    Raises:
        UserInputError: a demo model whose weights are not shipped, or a path that does not exist.
    """
    if isinstance(spec, str) and spec.lower() in DEMO_MODELS:
        path = demo_weights_path(spec)
        if not path.is_file():
            raise UserInputError(
                f"no trained demo weights are shipped yet for '{spec.lower()}' ({path} is missing); "
                "choose a trained checkpoint instead (bundle folder, .pt/.pth or .safetensors)",
                setting="model",
            )
        return path
    path = Path(spec)
    if not path.exists():
        raise UserInputError(
            f"model not found: {path}; choose {', '.join(DEMO_MODELS)}, a bundle folder or a checkpoint file",
            setting="model",
        )
    return path


def load_model(spec: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Build a network with its weights, in eval mode on ``device``.

    Args:
        spec: "tat" or "amir" (the demo weights shipped in ``monai_tat/weights/``), or a path to a
            MONAI bundle folder, a ``.pt`` / ``.pth`` state dict (loaded with
            ``torch.load(weights_only=True)``), a ``.safetensors`` file, or a checkpoint in the
            authors' reference key naming.
        device: "cpu", "cuda", "cuda:N" or "auto".

    Raises:
        UserInputError: no demo weights shipped, missing or unreadable file.
        CheckpointMismatchError: the weights belong to another architecture or size (the message
            names the missing and unexpected keys).
    """
    path = model_path(spec)
    state, config = read_checkpoint(path)
    try:
        model = _build(state, config, path)
    except CheckpointMismatchError:
        if not path.is_dir() or config is None:
            raise
        # A bundle trained with another network_def than its configs describe (e.g. the papers'
        # size as a command-line override): the weights themselves tell the network's size.
        model = _build(state, None, path)
    return model.to(resolve_device(device)).eval()


def _build(state: dict[str, torch.Tensor], config: dict[str, Any] | None, path: Path) -> nn.Module:
    from monai_tat.networks import build_network, network_from_state_dict
    from monai_tat.networks.reference import load_checked_state_dict

    if config is None:
        try:
            return network_from_state_dict(state)
        except CheckpointMismatchError as err:
            raise CheckpointMismatchError(f"{path}: {err}") from err
        except (KeyError, IndexError, ValueError, RuntimeError) as err:
            # A state dict that looks partly like ours but lacks tensors its architecture needs.
            raise CheckpointMismatchError(
                f"{path} is not a TAT, AMIR or Restormer checkpoint this package can rebuild ({type(err).__name__}: {err})"
            ) from err
    kwargs = {k: v for k, v in config.items() if k != "name"}
    try:
        model = build_network(config["name"], **kwargs)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"the network config stored with {path} is not usable ({err})") from err
    try:
        load_checked_state_dict(model, state, source=f"checkpoint {path}")
    except CheckpointMismatchError:
        from monai_tat.networks.reference import convert_reference_state_dict, is_reference_state_dict

        if not is_reference_state_dict(state):
            raise
        load_checked_state_dict(model, convert_reference_state_dict(state), source=f"reference checkpoint {path}")
    return model
