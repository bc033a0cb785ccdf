"""Restore a file on disk: check paths, read, restore, write atomically. The one file-to-file path.

The output is an image file (NIfTI / NRRD / MHA, by its suffix) or, with ``output_format="dicom"``,
a new DICOM series folder derived from a DICOM input (:func:`monai_tat.io.write_dicom_series`).

The ``monai-tat restore`` command and the Slicer module's background script both call
:func:`restore_file`; they only add their own way of showing progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.errors import UserInputError
from monai_tat.inference.confidence import restore_with_confidence
from monai_tat.inference.devices import resolve_device
from monai_tat.inference.engine import CancelSignal, ProgressCallback, restore_volume
from monai_tat.inference.kspace_consistency import KSpaceConsistencyMode
from monai_tat.inference.models import load_model, model_path
from monai_tat.inference.task_detection import resolve_task
from monai_tat.io.provenance import weights_sha256
from monai_tat.inference.units import input_units, task_given_conversion
from monai_tat.io import check_output_path, image_suffix, read_volume, write_volume
from monai_tat.io.atomic_folder import check_output_folder
from monai_tat.io.dicom import is_dicom_file
from monai_tat.io.dicom_write import write_dicom_series
from monai_tat.io.volume import OUTPUT_SUFFIXES

__all__ = ["restore_file", "check_restore_paths", "check_confidence_path", "RestoredFile", "OUTPUT_FORMATS"]

#: ``output_format`` values: "auto" (an image file, format from the suffix) or "dicom" (a series folder).
OUTPUT_FORMATS = ("auto", "dicom")

StatusCallback = Callable[[str], None]


@dataclass(frozen=True)
class RestoredFile:
    """What :func:`restore_file` did: the images (physical units) and the choices it resolved."""

    output_path: Path
    image: MetaTensor
    restored: MetaTensor
    task: str
    network: str
    device: torch.device
    confidence: MetaTensor | None = None
    confidence_path: Path | None = None


def check_restore_paths(
    input_path: str | Path, output_path: str | Path, *, overwrite: bool = False, output_format: str = "auto"
) -> Path:
    """Refuse an input that does not exist, or an output that is the input, has an unsupported
    suffix, exists (without ``overwrite``) or cannot be written; for ``output_format="dicom"``, an
    input that is not DICOM or an output folder that cannot be created.

    Called before any computation so that a mistake costs nothing.
    """
    source = Path(input_path)
    if not source.exists():
        raise UserInputError(f"input volume not found: {source}; choose an existing image file or DICOM folder")
    out = Path(output_path)
    if output_format not in OUTPUT_FORMATS:
        raise UserInputError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if output_format == "dicom":
        if not (source.is_dir() or is_dicom_file(source)):
            raise UserInputError(
                f"{source} is not DICOM: a DICOM series is written only from a DICOM input, whose patient, study and "
                "geometry it keeps (none is invented); write a NIfTI / NRRD / MHA file instead"
            )
        return check_output_folder(out, overwrite=overwrite, inputs=[source])
    if image_suffix(out) not in OUTPUT_SUFFIXES:
        raise UserInputError(f"output {out} must end in one of {', '.join(OUTPUT_SUFFIXES)}")
    return check_output_path(out, overwrite=overwrite, inputs=[source])


def check_confidence_path(confidence_path: str | Path, input_path: str | Path, output_path: str | Path, *,
                          overwrite: bool = False) -> Path:
    """Refuse a confidence-map output that is not an image file, is the restored output or the
    input, exists (without ``overwrite``) or cannot be written; called before any computation."""
    path = Path(confidence_path)
    if image_suffix(path) not in OUTPUT_SUFFIXES:
        raise UserInputError(f"confidence map {path} must end in one of {', '.join(OUTPUT_SUFFIXES)}")
    if path.resolve() == Path(output_path).resolve():
        raise UserInputError("the confidence map and the restored output are the same path; choose another one")
    return check_output_path(path, overwrite=overwrite, inputs=[Path(input_path)])


def restore_file(
    input_path: str | Path,
    output_path: str | Path,
    model: nn.Module | str | Path = "tat",
    *,
    task: str | None = "auto",
    device: str | torch.device = "auto",
    batch_size: int | None = None,
    axis: int | None = None,
    amp: str | bool | None = None,
    self_ensemble: bool = False,
    kspace_consistency: KSpaceConsistencyMode = "auto",
    suv_overrides: Mapping[str, Any] | None = None,
    suv_factor: float | None = None,
    rescale_intercept: float | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelSignal = None,
    status: StatusCallback | None = None,
    on_task: Callable[[str], None] | None = None,
    output_format: str = "auto",
    confidence_path: str | Path | None = None,
) -> RestoredFile:
    """Restore the image at ``input_path`` into ``output_path`` (NIfTI / NRRD / MHA, or a DICOM series), geometry kept.

    Args:
        input_path: NIfTI, NRRD, MHA, a DICOM file or series folder (PET DICOM read in SUV).
        output_path: file to write; never the input; an existing file only with ``overwrite``.
        model: a network, or a :func:`~monai_tat.inference.load_model` spec ("tat", "amir", a
            bundle folder or checkpoint file).
        task, device, batch_size, axis, amp, self_ensemble, kspace_consistency, progress, cancel: as
            :func:`~monai_tat.inference.restore_volume`.
        suv_overrides: PET acquisition values (``weight_kg``, ``injected_dose_bq``, ``half_life_s``,
            ``injection_time``, ``scan_time``): for a DICOM series, used where its header lacks them
            (:func:`monai_tat.io.suv_factor_from_dicom`); for an image file in Bq/mL, its SUV factor
            (:func:`monai_tat.io.suv.suv_factor_from_values`).
        suv_factor, rescale_intercept: an image file in Bq/mL (PET) or in stored values (CT) and its
            conversion to SUV / HU, as :func:`~monai_tat.inference.restore_volume`; the output is
            written in the input's units.
        status: called with a short text before each step (reading, loading, restoring, writing).
        on_task: called with the resolved task before the first slice is restored.
        output_format: "auto" (an image file, format from the suffix of ``output_path``) or
            "dicom": ``output_path`` is a new folder holding a DICOM series derived from the input
            series (same study and frame of reference, values back in the input's units), see
            :func:`monai_tat.io.write_dicom_series`. DICOM output needs a DICOM input.
        confidence_path: also write the confidence map
            (:func:`~monai_tat.inference.confidence.restore_with_confidence`: high = do not trust fine
            detail here) to this image file, in the restored image's units and geometry; it costs 8
            restorations. Written after the restored output.

    Returns:
        A :class:`RestoredFile`. Nothing is written when anything fails or is cancelled before the
        writing starts.
    """
    report = status or (lambda text: None)
    check_restore_paths(input_path, output_path, overwrite=overwrite, output_format=output_format)
    if confidence_path is not None:
        check_confidence_path(confidence_path, input_path, output_path, overwrite=overwrite)
    if not isinstance(model, nn.Module):
        model_path(model)  # a missing checkpoint is reported before the volume is read
    if batch_size is not None and int(batch_size) < 1:
        raise UserInputError(f"batch size must be at least 1, got {batch_size}", setting="batch_size")
    report(f"reading {input_path}")
    image = read_volume(input_path, suv_overrides=dict(suv_overrides or {}))
    suv_factor = _file_suv_factor(image, suv_factor, suv_overrides)
    resolved_task = resolve_task(task_given_conversion(task, suv_factor, rescale_intercept), image)
    # units checked before the model is loaded (restore_volume checks again, for its other callers)
    input_units(resolved_task, image.as_tensor(), suv_factor=suv_factor, rescale_intercept=rescale_intercept)
    if on_task is not None:
        on_task(resolved_task)
    dev = resolve_device(device)
    if not isinstance(model, nn.Module):
        report(f"loading model {model}")
        model = load_model(model, dev)
    report(f"restoring on {dev}")
    options = dict(device=dev, batch_size=batch_size, axis=axis, progress=progress, cancel=cancel, amp=amp,
                   self_ensemble=self_ensemble, kspace_consistency=kspace_consistency, suv_factor=suv_factor,
                   rescale_intercept=rescale_intercept)
    confidence = None
    if confidence_path is None:
        restored = restore_volume(image, model, resolved_task, **options)
    else:
        restored, confidence = restore_with_confidence(image, model, resolved_task, **options)
    report(f"writing {output_path}")
    if output_format == "dicom":
        out = write_dicom_series(restored, output_path, weights_sha256=weights_sha256(model),
                                 network=type(model).__name__, task=resolved_task, overwrite=overwrite)
    else:
        out = write_volume(restored, output_path, overwrite=overwrite)
    written_confidence = None
    if confidence is not None:
        report(f"writing {confidence_path}")
        written_confidence = Path(write_volume(confidence, confidence_path, overwrite=overwrite))
    return RestoredFile(Path(out), image, restored, resolved_task, type(model).__name__, dev,
                        confidence, written_confidence)


def _file_suv_factor(image: MetaTensor, suv_factor: float | None, suv_overrides: Mapping[str, Any] | None) -> float | None:
    """The SUV factor of an image file in Bq/mL: given, or from its acquisition values (a DICOM series
    used them while it was read, and is in SUV already)."""
    values = {key: value for key, value in (suv_overrides or {}).items() if value is not None}
    if image.meta.get("modality") or not values:
        return suv_factor
    if suv_factor is not None:
        raise UserInputError("give either the SUV factor or the acquisition values it is computed from "
                             f"({', '.join(sorted(values))}), not both", setting="suv_factor")
    from monai_tat.io.suv import suv_factor_from_values

    return suv_factor_from_values(**{"weight_kg": None, "injected_dose_bq": None, **values})
