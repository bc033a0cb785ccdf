"""``monai-tat restore`` on many inputs: a folder, a list file or a MONAI datalist, one model load.

``restore`` hands over to :func:`run_batch` when its input is a batch source
(:func:`monai_tat.inference.batch.is_batch_source`); the options added here concern batches only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monai_tat.cli.arguments import int_at_least
from monai_tat.errors import UserInputError

__all__ = ["add_batch_arguments", "run_batch", "EXIT_CASES_FAILED"]

#: Exit status when the run went through but some cases failed (each is listed on stderr).
EXIT_CASES_FAILED = 1
EXIT_CANCELLED = 130  # as the command line's Ctrl-C status


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for a folder / list / datalist input."""
    group = parser.add_argument_group(
        "several inputs",
        "INPUT may be a folder of volumes or DICOM series folders, a list file (.txt, .lst, .csv: one path a line) "
        "or a MONAI datalist (.json); OUTPUT is then a folder. The model is loaded once; a manifest records each "
        "case as it ends; a failed case does not stop the others (exit status 1, every failure listed).",
    )
    group.add_argument("--skip-existing", action="store_true",
                       help="leave cases whose output exists alone (resume a killed run)")
    group.add_argument("--num-parts", type=int, default=1, metavar="N",
                       help="split the sorted cases into N parts (round-robin) to run on N machines (default 1)")
    group.add_argument("--part-id", type=int_at_least(0), default=0, metavar="K",
                       help="restore part K of N, counted from 0 (e.g. $SLURM_ARRAY_TASK_ID with --array=0-<N-1>)")
    group.add_argument("--manifest", default=None, metavar="JSONL",
                       help="manifest file (default OUTPUT/manifest.jsonl, or manifest.part-K-of-N.jsonl)")
    group.add_argument("--datalist-key", default="testing", metavar="KEY",
                       help="which list of a datalist JSON to restore (default testing)")


def run_batch(args: argparse.Namespace) -> int:
    """Restore every case of ``args.input`` into the folder ``args.output``; 1 when any case failed."""
    from tqdm import tqdm

    from monai_tat.inference.batch import collect_cases, manifest_name, restore_batch, select_part

    if args.preview is not None:
        raise UserInputError("--preview writes one PNG; it applies to a single input, not to a folder or list")
    from monai_tat.io import image_suffix
    from monai_tat.io.volume import OUTPUT_SUFFIXES

    if image_suffix(args.output) in OUTPUT_SUFFIXES:
        raise UserInputError(f"{args.input} holds several inputs (a folder of volumes or series, or a list), so the "
                             f"output must be a folder, not the file name {args.output}")
    _refuse_single_scan_options(args)
    source = Path(args.input)
    if source.is_dir() and Path(args.output).resolve().is_relative_to(source.resolve()):
        raise UserInputError(f"output folder {args.output} is inside the input folder {args.input}, where it would "
                             "become an input of the next run; choose a folder outside it")
    output_format = "nii.gz" if args.format == "auto" else args.format
    cases = select_part(collect_cases(args.input, datalist_key=args.datalist_key), args.num_parts, args.part_id)
    out_dir = Path(args.output)
    manifest = Path(args.manifest) if args.manifest else out_dir / manifest_name(args.num_parts, args.part_id)
    total = len(cases)
    bar = tqdm(total=total, desc="restoring", unit="case", disable=args.quiet or total == 0, file=sys.stderr)

    def before(index: int, count: int, case) -> None:
        bar.set_postfix_str(case.name, refresh=True)

    finished = 0

    def after(index: int, count: int, row: dict) -> None:
        nonlocal finished
        finished += 1
        bar.update(1)

    try:
        report = restore_batch(
            cases, out_dir, args.model, task=args.task, output_format=output_format, manifest=manifest,
            skip_existing=args.skip_existing, overwrite=args.overwrite, device=args.device, on_case=before,
            on_row=after, batch_size=args.batch_size, axis=args.axis, amp=args.amp,
            self_ensemble=args.self_ensemble, kspace_consistency=args.kspace_consistency,
        )
    except KeyboardInterrupt:
        bar.leave = False
        bar.close()
        # Finished cases are complete files recorded in the manifest; the case in progress left nothing.
        print(f"monai-tat: cancelled after {finished} of {total} cases; finished outputs and {manifest} are kept; "
              "run again with --skip-existing to resume", file=sys.stderr)
        return EXIT_CANCELLED
    finally:
        bar.close()
    done = sum(1 for row in report.rows if row["status"] == "done" and row["input"] not in report.skipped)
    summary = (f"restored {done} of {total} cases into {out_dir} "
               f"({len(report.skipped)} skipped, {len(report.failed)} failed); manifest {report.manifest}")
    if args.num_parts > 1:
        summary += f"; part {args.part_id} of {args.num_parts}"
    print(summary)
    if report.failed:
        print(f"monai-tat: error: {len(report.failed)} of {total} cases failed:", file=sys.stderr)
        for row in report.failed:
            print(f"  {row['input']}: {row['error']}", file=sys.stderr)
        return EXIT_CASES_FAILED
    return 0


#: Options that describe one scan (its SUV factor, patient, rescale): never applied to a whole batch.
_SINGLE_SCAN_OPTIONS = {"suv_factor": "--suv-factor", "patient_weight": "--patient-weight",
                        "injected_dose": "--injected-dose", "injection_time": "--injection-time",
                        "scan_time": "--scan-time", "half_life": "--half-life",
                        "rescale_intercept": "--rescale-intercept"}


def _refuse_single_scan_options(args: argparse.Namespace) -> None:
    given = [flag for name, flag in _SINGLE_SCAN_OPTIONS.items() if getattr(args, name, None) is not None]
    if given:
        raise UserInputError(
            f"{', '.join(given)} describe one scan and would be wrong for the other inputs; give DICOM series (their "
            "headers carry these values) or images already in SUV / HU, or restore such an image by itself"
        )
