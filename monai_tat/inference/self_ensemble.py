"""Geometric self-ensemble: average a 2D network's outputs over the 8 flips and transpositions.

Restoration networks are not exactly equivariant to flips and 90-degree rotations, so their errors
on the 8 symmetric versions of a slice are partly independent and their mean is closer to the
truth (on the held-out real brains: MRI x4 +0.1..+0.2 dB, PET +0.04 dB). It costs 8 forward passes
per slice. Outputs are mapped back with the inverse transform before averaging, so the result is
an image of the input's orientation.
"""

from __future__ import annotations

import torch
from torch import nn

from monai_tat.errors import UserInputError

__all__ = ["SelfEnsemble", "DihedralView", "DIHEDRAL_TRANSFORMS", "apply_dihedral", "invert_dihedral"]

#: One symmetry of the square: (transpose H and W first, then flip these spatial dims).
DihedralTransform = tuple[bool, tuple[int, ...]]

#: The dihedral group of the square, 8 elements; the first is the identity.
DIHEDRAL_TRANSFORMS: tuple[DihedralTransform, ...] = tuple(
    (transpose, flips) for transpose in (False, True) for flips in ((), (-2,), (-1,), (-2, -1))
)


def apply_dihedral(x: torch.Tensor, transform: DihedralTransform) -> torch.Tensor:
    """``(..., H, W) -> (..., H, W)`` or ``(..., W, H)``: ``x`` seen under one symmetry of the square."""
    transpose, flips = transform
    view = x.transpose(-2, -1) if transpose else x
    return torch.flip(view, flips) if flips else view


def invert_dihedral(y: torch.Tensor, transform: DihedralTransform) -> torch.Tensor:
    """The inverse of :func:`apply_dihedral`: an output of the transformed view back in ``x``'s orientation."""
    transpose, flips = transform
    y = torch.flip(y, flips) if flips else y
    return y.transpose(-2, -1) if transpose else y


def _one_tensor(out: object) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise UserInputError("the self-ensemble needs a network that returns one image tensor (put it in eval mode)")
    return out


class DihedralView(nn.Module):
    """``(B, C, H, W) -> (B, C, H, W)``: ``network`` run on one symmetric view, mapped back.

    One member of the self-ensemble as a network of its own, so that the whole restoration (intensity
    mapping, k-space consistency) can run once per member (:mod:`monai_tat.inference.confidence`).
    """

    def __init__(self, network: nn.Module, transform: DihedralTransform) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise UserInputError(f"a dihedral view wraps a torch.nn.Module, got {type(network).__name__}")
        self.network = network
        self.transform = transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return invert_dihedral(_one_tensor(self.network(apply_dihedral(x, self.transform))), self.transform)


class SelfEnsemble(nn.Module):
    """``(B, C, H, W) -> (B, C, H, W)``: the mean of ``network`` over :data:`DIHEDRAL_TRANSFORMS`.

    Args:
        network: a 2D image-to-image module returning one tensor (an AMIR in training mode, which
            also returns its balance loss, is refused: the ensemble is for inference).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise UserInputError(f"the self-ensemble wraps a torch.nn.Module, got {type(network).__name__}")
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise UserInputError(f"the self-ensemble takes (B, C, H, W) slices, got shape {tuple(x.shape)}")
        total: torch.Tensor | None = None
        for transform in DIHEDRAL_TRANSFORMS:
            out = invert_dihedral(_one_tensor(self.network(apply_dihedral(x, transform))), transform)
            # out of place: a network may return its input itself, which later views still read
            total = out.float() if total is None else total + out.float()
        return (total / len(DIHEDRAL_TRANSFORMS)).to(x.dtype)
