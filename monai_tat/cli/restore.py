"""``monai-tat restore IN OUT``: restore a CT, PET or MRI volume with TAT / AMIR."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from typing import TYPE_CHECKING

from monai_tat.cli.restore_batch import add_batch_arguments, run_batch
from monai_tat.cli.arguments import int_at_least
from monai_tat.errors import UserInputError
from monai_tat.tasks import TASK_SPECS, TASKS, get_task

if TYPE_CHECKING:
    import numpy as np

__all__ = ["register", "run", "write_preview"]


def _model_ranges_text() -> str:
    return ", ".join(f"{s.name.upper()} [{s.model_range[0]:g}, {s.model_range[1]:g}] {s.units}"
                     for s in TASK_SPECS.values() if s.fixed_range)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``restore`` subcommand."""
    p = subparsers.add_parser(
        "restore",
        help="restore a volume (low-dose CT, low-count PET, MRI super-resolution)",
        description="Restore a 2D image or 3D volume slice by slice and write it with the input's geometry. "
        "Inputs: NIfTI, NRRD, MHA, a DICOM file or series folder (PET DICOM is converted to SUV); or many of them "
        "(a folder, a list file or a MONAI datalist). "
        "Outputs: .nii.gz, .nii, .nrrd, .mha, or with --format dicom a new DICOM series of the input's study. "
        "Voxels outside the model range of a fixed-range task "
        f"({_model_ranges_text()}) keep their input values.",
    )
    p.add_argument("input", help="input image file, DICOM file or DICOM series folder; or a folder / list / datalist "
                   "of them")
    p.add_argument("output", help="output file (.nii.gz, .nii, .nrrd or .mha), or folder (--format dicom, several "
                   "inputs); never the input")
    p.add_argument("--format", default="auto", choices=("auto", "nii.gz", "nii", "nrrd", "mha", "dicom"),
                   help="output format: auto (from the output suffix; nii.gz for several inputs) or dicom: a new "
                   "series (new UIDs, same study, values in the input's units) from a DICOM input")
    p.add_argument("--task", default="auto", choices=(*TASKS, "auto"),
                   help="restoration task; auto reads the DICOM modality, then the intensities (default auto)")
    p.add_argument("--model", default="tat",
                   help="tat, amir (shipped demo weights) or a bundle folder / .pt / .pth / .safetensors checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None,
                   help="slices per batch (default 8 on GPU, 1 on CPU; halved automatically when GPU memory runs out)")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=None,
                   help="slicing axis of a 3D volume (default: the axial axis from the image orientation)")
    p.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                   help="mixed precision on GPU (default none: float32)")
    p.add_argument("--cpu-compile", default=None, choices=("auto", "on", "off"),
                   help="on the CPU, run the network compiled ahead of time and cached on disk: auto (default, or "
                   "MONAI_TAT_CPU_COMPILE: when one is cached or the volume is large enough to pay for compiling), "
                   "on, or off")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the network over the 8 flips / transpositions of each slice (a little better, 8x slower)")
    p.add_argument("--kspace-consistency", default="auto", choices=("auto", "on", "off"),
                   help="MRI: give the restored slices the input's measured k-space band back; auto (default) does "
                   "it when the input is detected as a 4x k-space-truncated magnitude image")
    p.add_argument("--confidence", metavar="FILE", default=None,
                   help="also write a confidence map (.nii.gz, .nii, .nrrd or .mha) in the output's units: how much "
                   "the result varies over the 8 flips / transpositions, plus for MRI the detail added outside the "
                   "measured k-space band; high = do not trust fine detail there (8x slower)")
    p.add_argument("--preview", metavar="PNG", default=None,
                   help="also write a PNG of the central slice: input | restored, in a window for the task")
    _add_units_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_batch_arguments(p)
    p.set_defaults(func=run)


def _date_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date and time such as 2024-05-17T09:42:00, got {text!r}") from None


def _add_units_arguments(p: argparse.ArgumentParser) -> None:
    """Options that convert an input in other units (PET Bq/mL, CT stored values); see docs/units.md."""
    units = p.add_argument_group(
        "input units", "CT must be in HU and PET in SUV (a DICOM PET is converted from its headers); other "
        "units are refused unless converted with these options; the output is written in the input's units")
    units.add_argument("--suv-factor", type=float, default=None, metavar="F",
                       help="PET file in Bq/mL: SUV = value x F")
    units.add_argument("--patient-weight", type=float, default=None, metavar="KG",
                       help="PET: patient weight in kg (a DICOM header lacking it, or a Bq/mL file's SUV factor)")
    units.add_argument("--injected-dose", type=float, default=None, metavar="BQ",
                       help="PET: injected activity in Bq (a DICOM header lacking it, or a Bq/mL file's SUV factor)")
    units.add_argument("--injection-time", type=_date_time, default=None, metavar="DATETIME",
                       help="PET: injection date and time, e.g. 2024-05-17T09:42 (with --scan-time and --half-life)")
    units.add_argument("--scan-time", type=_date_time, default=None, metavar="DATETIME",
                       help="PET: decay reference date and time of the scan (series start)")
    units.add_argument("--half-life", type=float, default=None, metavar="S",
                       help="PET: radionuclide half-life in s (fluorine-18: 6586.2)")
    units.add_argument("--rescale-intercept", type=float, default=None, metavar="B",
                       help="CT file in stored values: HU = value + B (usually -1024)")


def run(args: argparse.Namespace) -> int:
    """Restore with a progress bar; the library checks every path first and writes atomically."""
    from tqdm import tqdm

    from monai_tat.inference import check_restore_paths, restore_file
    from monai_tat.inference.files import check_confidence_path
    from monai_tat.inference.batch import is_batch_source

    if args.cpu_compile is not None:  # read by monai_tat.inference.cpu_speed wherever a volume is restored
        from monai_tat.inference.cpu_speed import MODE_ENV

        os.environ[MODE_ENV] = args.cpu_compile
    if is_batch_source(args.input):
        if args.confidence is not None:
            raise UserInputError("--confidence names one file: give one input volume, not a folder / list / datalist")
        return run_batch(args)
    if args.num_parts != 1 or args.part_id != 0:
        raise UserInputError("--num-parts / --part-id split several inputs; give a folder, list file or datalist")
    if args.skip_existing and Path(args.output).exists():
        print(f"skipped {args.input}: {args.output} exists")
        return 0
    output_format = _single_output_format(args)
    check_restore_paths(args.input, args.output, overwrite=args.overwrite, output_format=output_format)
    if args.confidence is not None:
        check_confidence_path(args.confidence, args.input, args.output, overwrite=args.overwrite)
    if args.preview is not None:
        _check_preview_path(Path(args.preview), args)
    overrides = {"weight_kg": args.patient_weight, "injected_dose_bq": args.injected_dose,
                 "half_life_s": args.half_life, "injection_time": args.injection_time, "scan_time": args.scan_time}
    bar = None  # created at the first callback, so that input errors print no empty bar
    task_name = args.task

    def remember_task(task: str) -> None:
        nonlocal task_name
        task_name = task

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=f"restoring ({task_name})", unit="slice", disable=args.quiet, file=sys.stderr)
        bar.update(done - bar.n)

    try:
        result = restore_file(
            args.input, args.output, args.model, task=args.task, device=args.device, batch_size=args.batch_size,
            axis=args.axis, amp=args.amp, self_ensemble=args.self_ensemble,
            kspace_consistency=args.kspace_consistency, suv_overrides={k: v for k, v in overrides.items() if v is not None},
            suv_factor=args.suv_factor, rescale_intercept=args.rescale_intercept,
            overwrite=args.overwrite, progress=progress, on_task=remember_task, output_format=output_format,
            confidence_path=args.confidence,
        )
    except BaseException:
        if bar is not None:
            bar.leave = False  # the error message is the one line left on stderr
            bar.close()
        raise
    if bar is not None:
        bar.close()
    if args.preview is not None:
        axis = result.restored.meta["restoration"]["axis"]
        write_preview(result.image.numpy(), result.restored.numpy(), result.task, args.preview, axis=axis,
                      overwrite=args.overwrite)
    record = result.restored.meta["restoration"]
    extras = ["self-ensemble"] if record.get("self_ensemble") else []
    if record.get("kspace_consistency", {}).get("applied"):
        extras.append("k-space consistency")
    details = ", ".join([result.task, result.network, str(result.device), *extras])
    print(f"restored {args.input} -> {args.output} ({details})")
    if result.confidence_path is not None:
        print(f"confidence map -> {result.confidence_path} ({result.confidence.meta['confidence']['units']}; "
              "high = do not trust fine detail there)")
    return 0


def _single_output_format(args: argparse.Namespace) -> str:
    """``restore_file``'s output_format for one input: "dicom", or "auto" when --format agrees with the suffix."""
    from monai_tat.io import image_suffix

    if args.format in ("auto", "dicom"):
        return args.format
    if image_suffix(args.output) != f".{args.format}":
        raise UserInputError(f"--format {args.format} does not match the output {args.output}; "
                             f"name it *.{args.format} or leave --format auto")
    return "auto"


def _check_preview_path(preview: Path, args: argparse.Namespace) -> None:
    from monai_tat.io import check_output_path, same_file

    if preview.suffix.lower() != ".png":
        raise UserInputError(f"preview {preview} must be a .png file")
    if same_file(preview, args.output):
        raise UserInputError("--preview and the output are the same file; choose another preview path")
    check_output_path(preview, overwrite=args.overwrite, inputs=[args.input])


def _central_slice(volume: np.ndarray, axis: int | None) -> np.ndarray:
    """The middle slice, rows along j and columns along i (the orientation the network saw)."""
    import numpy as np

    if volume.ndim == 2:
        return volume.T
    index = volume.shape[axis] // 2
    return np.take(volume, index, axis=axis).T


def _to_grey(image: np.ndarray, low: float, high: float) -> np.ndarray:
    import numpy as np

    scale = 255.0 / (high - low) if high > low else 0.0
    return np.clip((image.astype(np.float64) - low) * scale, 0, 255).round().astype(np.uint8)


def write_preview(
    image: np.ndarray, restored: np.ndarray, task: str, path: str | Path, *, axis: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a PNG of the central slice, input | restored side by side, both in the same window.

    Window: the task's display window (:mod:`monai_tat.tasks`), else the input slice's 0.5 / 99.5
    percentiles (MRI). ``axis`` is the slicing axis of a 3D volume.
    """
    import numpy as np
    from PIL import Image

    from monai_tat.io import atomic_write

    before, after = _central_slice(image, axis), _central_slice(restored, axis)
    low, high = get_task(task).display_window or tuple(np.percentile(before, (0.5, 99.5)))
    gap = np.zeros((before.shape[0], 2), dtype=np.uint8)
    panel = np.concatenate([_to_grey(before, low, high), gap, _to_grey(after, low, high)], axis=1)
    return atomic_write(path, lambda tmp: Image.fromarray(panel).save(tmp, format="PNG"), overwrite=overwrite)
