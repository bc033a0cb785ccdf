"""Saving network weights as MONAI bundles expect them: a plain state dict, written atomically."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import torch
from torch import nn

from monai_tat.training.ema import unwrap_model

__all__ = ["save_state_dict"]


def save_state_dict(model: nn.Module, path: str | os.PathLike) -> Path:
    """``torch.save`` the plain network's state dict (no DDP / EMA prefixes) to ``path`` atomically.

    The file loads with ``torch.load(weights_only=True)``, ``ckpt_export`` and ``monai_tat.inference.load_model``.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        torch.save(state, tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
