"""``monai-tat simulate``: paired low/high-quality training data from high-quality volumes."""

from __future__ import annotations

import argparse
import json
import sys

from monai_tat.tasks import TASKS, get_task

__all__ = ["register", "run"]


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> float:
    value = _fraction(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="simulate low-quality partners of high-quality volumes and write a MONAI datalist",
        description="Write low/high-quality pairs (OUT/lq, OUT/hq) and OUT/datalist.json (MONAI decathlon "
        "format: training/validation/testing, split by patient). CT: projection-domain low dose (input in HU); "
        "PET: low-count OSEM (input in SUV; PET DICOM is converted); MRI: k-space truncation, central slices. "
        "Nothing existing is replaced without --overwrite.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="high-quality volume: NIfTI / NRRD / MHA file, DICOM file or DICOM series folder")
    p.add_argument("--task", required=True, choices=TASKS, help="degradation to simulate")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--patient-ids", nargs="+", metavar="ID", default=None,
                   help="one patient id per input (default: DICOM PatientID, else the file name); "
                   "volumes of one patient always land in the same split")
    p.add_argument("--split", nargs=3, type=_fraction, metavar=("TRAIN", "VAL", "TEST"), default=(0.8, 0.1, 0.1),
                   help="fractions of patients per split (default 0.8 0.1 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the noise (default 0)")
    p.add_argument("--dose-fraction", type=_positive, default=None,
                   help="CT: simulated dose / input dose (default 0.25, quarter dose)")
    p.add_argument("--dose-reduction-factor", type=_positive, default=None,
                   help="PET: full dose / simulated dose (default 12)")
    p.add_argument("--factor", type=_positive, default=None,
                   help="MRI: k-space truncation factor per in-plane axis (default 4)")
    p.add_argument("--mri-slices", type=lambda t: int(_positive(t)), default=None,
                   help=f"MRI: central slices kept (default {get_task('mri').central_slices})")
    p.add_argument("--format", default=".nii.gz", choices=(".nii.gz", ".nii", ".nrrd", ".mha"),
                   help="output file format (default .nii.gz)")
    p.add_argument("--overwrite", action="store_true", help="replace existing pairs and datalist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _simulator_kwargs(args: argparse.Namespace) -> dict[str, float]:
    from monai_tat.errors import UserInputError

    given = {
        "ct": ("--dose-fraction", "dose_fraction", args.dose_fraction),
        "pet": ("--dose-reduction-factor", "dose_reduction_factor", args.dose_reduction_factor),
        "mri": ("--factor", "factor", args.factor),
    }
    for task, (flag, _, value) in given.items():
        if value is not None and task != args.task:
            raise UserInputError(f"{flag} applies to --task {task}, not --task {args.task}")
    _, name, value = given[args.task]
    return {} if value is None else {name: value}


def _check_split(split: tuple[float, float, float]) -> None:
    from monai_tat.errors import UserInputError

    if abs(sum(split) - 1.0) > 1e-3:
        raise UserInputError(
            f"--split fractions must add up to 1, got {' + '.join(f'{f:g}' for f in split)} = {sum(split):g} "
            "(for example --split 0.8 0.1 0.1)"
        )


def run(args: argparse.Namespace) -> int:
    """Build the paired dataset with a progress bar; print where the datalist is."""
    from tqdm import tqdm

    from monai_tat.data import build_paired_dataset

    _check_split(args.split)
    kwargs = _simulator_kwargs(args)
    with tqdm(desc=f"simulating ({args.task})", unit="volume", disable=args.quiet, file=sys.stderr,
              leave=False) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        datalist = build_paired_dataset(
            args.inputs, args.task, args.out, patient_ids=args.patient_ids, split=args.split, seed=args.seed,
            simulator_kwargs=kwargs, mri_slices=args.mri_slices, suffix=args.format, overwrite=args.overwrite,
            progress=progress,
        )
    counts = json.loads(datalist.read_text(encoding="utf-8"))
    print(
        f"wrote {counts['numTraining']} training, {counts['numValidation']} validation and {counts['numTest']} "
        f"testing pair(s) ({args.task}); datalist: {datalist}"
    )
    return 0
