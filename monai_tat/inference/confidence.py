"""A per-voxel confidence map beside a restoration: how much the network's answer depends on how it looks.

Reading the map: it is in the restored volume's units (HU, SUV or Bq/mL, MRI intensity), on its grid;
**high means do not trust fine detail there**, zero means every view agreed and nothing was invented.
It is the root sum of squares of two parts:

- **ensemble spread**: the whole restoration is run 8 times, the network seeing each slice under one
  of the 8 flips / transpositions of the square (:data:`~monai_tat.inference.self_ensemble.DIHEDRAL_TRANSFORMS`),
  each output mapped back. A restoration network is not exactly symmetric, so where it guesses, its
  8 answers differ; the map holds their standard deviation per voxel. A network that is exactly
  flip-invariant has zero spread everywhere.
- **invented detail (MRI with k-space consistency)**: the measured input fixes the central k-space
  band of each slice; everything the restoration put outside that band (the out-of-band part of
  ``restored - input``) was not measured. The map holds its magnitude per voxel.

The restored volume returned with the map is the plain restoration (the identity view), or the mean
of the 8 views with ``self_ensemble=True``; the map costs 8 restorations either way.

Example::

    restored, confidence = restore_with_confidence("mri_lr.nii.gz", "tat", task="mri")
    write_volume(confidence, "mri_confidence.nii.gz")   # same grid as restored, intensity units
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.devices import resolve_device
from monai_tat.inference.engine import ProgressCallback, restore_volume
from monai_tat.inference.models import load_model
from monai_tat.inference.self_ensemble import DIHEDRAL_TRANSFORMS, DihedralView
from monai_tat.io import as_meta_tensor, read_volume
from monai_tat.tasks import get_task

__all__ = ["restore_with_confidence", "invented_detail"]


def _slices_first(x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """``(N, H, W)`` view of a 2D image (N = 1) or of a volume sliced along ``axis``."""
    return x.unsqueeze(0) if axis is None or x.ndim == 2 else torch.movedim(x, axis, 0)


def invented_detail(restored: torch.Tensor, low_quality: torch.Tensor, band: dict[str, Any],
                    axis: int | None) -> torch.Tensor:
    """Per-voxel magnitude of what a restoration put outside the measured k-space band.

    Args:
        restored, low_quality: ``(I, J)`` or ``(I, J, K)`` volumes in the same units.
        band: the band record of ``meta["restoration"]["kspace_consistency"]["band"]`` (``rows`` and
            ``cols``: [start, stop) indices of the centred k-space).
        axis: the slicing axis of a 3D volume (None for 2D).

    Returns:
        a float32 tensor of ``restored``'s shape, same units, >= 0.
    """
    added = _slices_first(restored.float() - low_quality.float(), axis)
    h, w = added.shape[-2:]
    rows = (torch.arange(*band["rows"]) - h // 2) % h  # centred indices back to FFT order
    cols = (torch.arange(*band["cols"]) - w // 2) % w
    outside = torch.ones(h, w, dtype=torch.bool)
    outside[rows[:, None], cols[None, :]] = False
    magnitude = torch.empty_like(added)
    for index in range(added.shape[0]):  # one slice at a time: complex copies stay small
        spectrum = torch.fft.fft2(added[index]) * outside
        magnitude[index] = torch.fft.ifft2(spectrum).abs()
    if axis is None or restored.ndim == 2:
        return magnitude[0]
    return torch.movedim(magnitude, 0, axis).contiguous()


def _view_progress(progress: ProgressCallback, view: int, views: int, done: int, total: int) -> None:
    """One view's ``(done, total)`` as progress over all ``views`` restorations."""
    progress(view * total + done, views * total)


def restore_with_confidence(
    image: Any,
    network: nn.Module | str | Path,
    task: str | None = None,
    device: str | torch.device = "auto",
    *,
    self_ensemble: bool = False,
    progress: ProgressCallback | None = None,
    **restore_options: Any,
) -> tuple[MetaTensor, MetaTensor]:
    """Restore ``image`` and measure, per voxel, how far to trust the result.

    Args:
        image, network, task, device: as :func:`~monai_tat.inference.restore_volume`.
        self_ensemble: return the mean of the 8 views as the restoration (else the plain one).
        progress: ``progress(done, total)`` over all 8 restorations, in slices.
        restore_options: passed to :func:`~monai_tat.inference.restore_volume` (``batch_size``,
            ``axis``, ``cancel``, ``amp``, ``kspace_consistency``, ``kspace_factor``).

    Returns:
        ``(restored, confidence)``: two float32 MetaTensors of the input's shape and geometry, in the
        task's physical units. ``confidence.meta["confidence"]`` says what the map holds.

    Raises:
        UserInputError: as :func:`~monai_tat.inference.restore_volume`.
        RestorationCancelled: ``cancel`` was set.
    """
    volume = read_volume(image) if isinstance(image, (str, Path)) else image
    if isinstance(volume, tuple) and len(volume) == 2:
        volume = as_meta_tensor(volume[0], affine=volume[1])
    dev = resolve_device(device)
    model = load_model(network, dev) if isinstance(network, (str, Path)) else network
    if not isinstance(model, nn.Module):
        raise UserInputError(f"network must be a torch.nn.Module or a model spec, got {type(model).__name__}")

    views = len(DIHEDRAL_TRANSFORMS)
    first: MetaTensor | None = None
    mean = spread = None
    for index, transform in enumerate(DIHEDRAL_TRANSFORMS):
        member_progress = None if progress is None else partial(_view_progress, progress, index, views)
        member = restore_volume(volume, DihedralView(model, transform), task=task, device=dev,
                                progress=member_progress, **restore_options)
        values = member.as_tensor().float()
        if first is None:
            first, task = member, member.meta["restoration"]["task"]
            mean, spread = values.clone(), torch.zeros_like(values)
            continue
        delta = values - mean  # Welford: running mean and sum of squared deviations, two volumes
        mean += delta / (index + 1)
        spread += delta * (values - mean)
    assert first is not None and mean is not None and spread is not None
    spread = spread.div_(views).sqrt_()

    record = first.meta["restoration"]
    consistency = record.get("kspace_consistency", {})
    parts = ["ensemble spread over the 8 flips / transpositions"]
    if consistency.get("applied"):
        source = as_meta_tensor(volume).as_tensor()
        restored_values = mean if self_ensemble else first.as_tensor()
        invented = invented_detail(restored_values, source, consistency["band"], record["axis"])
        spread = torch.sqrt(spread.square_() + invented.square_())
        parts.append("magnitude of the detail added outside the measured k-space band")

    meta = dict(first.meta)
    meta["affine"] = first.affine.clone()
    if self_ensemble:
        restored = MetaTensor(mean, meta={**meta, "restoration": {**record, "self_ensemble": True}})
    else:
        restored = first
    units = meta.get("units") or get_task(task).units  # the input's own units when it was converted (PET Bq/mL)
    confidence_meta = {**meta, "confidence": {
        "units": units, "task": task, "views": views, "parts": parts,
        "reading": "high = do not trust fine detail here; zero = every view agreed and nothing was invented",
    }}
    return restored, MetaTensor(spread, meta=confidence_meta)
