"""Write one demo phantom of monai_tat (low-dose CT, low-dose PET or low-resolution MRI) to a file.

Run by the module's sample data (``MedicalRestoreLib.sample_data``) in a background Python, so
Slicer's own process never imports torch::

    python sample_data_script.py --task ct --output phantom.nrrd [--size 128] [--slices 4]

The phantom is drawn and degraded in code by ``monai_tat.demo.samples.make_sample`` (nothing is
downloaded) and written with its geometry by ``monai_tat.io.write_volume``. The library is the one
this extension ships, checked as for restoration (``restore_volume_script.import_shipped_library``).
Output lines use the restoration script's protocol: ``STATUS``, ``MODALITY <DICOM code>``,
``DONE <path>``, or ``ERROR <text>`` with exit status 2 (1 for an unexpected failure).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Optional, Sequence

# Run as a file, this script's folder (MedicalRestoreLib) is first on sys.path.
import restore_volume_script as protocol

SAMPLE_TASKS = ("ct", "pet", "mri")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Write a monai_tat demo phantom volume for one task.")
    parser.add_argument("--task", required=True, choices=SAMPLE_TASKS, help="which phantom: ct, pet or mri")
    parser.add_argument("--output", required=True, help="volume file to write (NRRD, NIfTI or MHA)")
    parser.add_argument("--size", type=int, default=128, help="in-plane matrix (PET: 2/3 of it); default 128")
    parser.add_argument("--slices", type=int, default=4, help="number of slices; default 4")
    parser.add_argument("--seed", type=int, default=2024, help="phantom and noise seed")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        protocol.emit(protocol.STATUS, "importing monai_tat and torch")
        protocol.import_shipped_library(protocol.library_root())
        from monai_tat.demo.samples import make_sample
        from monai_tat.errors import UserInputError
        from monai_tat.io import write_volume

        protocol.emit(protocol.STATUS, f"drawing the {args.task} phantom")
        sample = make_sample(args.task, size=args.size, slices=args.slices, seed=args.seed)
        try:
            write_volume(sample.low_quality, args.output)
        except (UserInputError, OSError) as error:
            protocol.emit(protocol.ERROR, error)
            return protocol.EXIT_USER_ERROR
        protocol.emit(protocol.MODALITY, sample.low_quality.meta["modality"])
        protocol.emit(protocol.DONE, args.output)
        return protocol.EXIT_OK
    except protocol.ScriptInputError as error:
        protocol.emit(protocol.ERROR, error)
        return protocol.EXIT_USER_ERROR
    except Exception as error:  # noqa: BLE001 - the parent only sees stdout; report everything
        traceback.print_exc(file=sys.stdout)
        protocol.emit(protocol.ERROR, f"unexpected {type(error).__name__}: {error}")
        return protocol.EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
