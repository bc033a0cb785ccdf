"""Is the confidence map high where the error is high? Per-patch rank correlation on paired volumes.

For every pair (low-quality image, reference) this restores the image with
:func:`monai_tat.inference.confidence.restore_with_confidence` and prints, per case, the PSNR of the
input and of the restoration (papers' convention) and the Spearman rank correlation between the
per-patch mean confidence and the per-patch RMS error of the restoration
(:func:`monai_tat.metrics.confidence_calibration.patch_rank_correlation`). ``--slices N`` restores
only the N central slices of each volume (the map costs 8 restorations).

Usage::

    python -m monai_tat.benchmarks confidence                          # the demo phantoms
    python -m monai_tat.benchmarks confidence --datalist heldout/datalist.json --slices 12 --json out.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.inference import load_model
from monai_tat.inference.confidence import restore_with_confidence
from monai_tat.inference.engine import choose_slice_axis
from monai_tat.io import read_volume
from monai_tat.metrics.confidence_calibration import patch_rank_correlation
from monai_tat.metrics.image_quality import mean_slice_psnr

__all__ = ["CalibrationRow", "measure_case", "main"]


@dataclass
class CalibrationRow:
    """One case: input and restored PSNR (dB) and the patch rank correlation of confidence with error."""

    case: str
    task: str
    slices: int
    input_psnr_db: float
    restored_psnr_db: float
    rank_correlation: float


def _central_slices(volume: MetaTensor, count: Optional[int]) -> MetaTensor:
    """The ``count`` central slices along the volume's slicing axis (all of them when None)."""
    axis = choose_slice_axis(volume, None)
    if count is None or axis is None or volume.shape[axis] <= count:
        return volume
    start = (volume.shape[axis] - count) // 2
    return volume.narrow(axis, start, count)


def measure_case(name: str, image: MetaTensor, label: MetaTensor, task: str, network: torch.nn.Module,
                 device: str, patch: int) -> CalibrationRow:
    """Restore one pair with its confidence map and score both."""
    restored, confidence = restore_with_confidence(image, network, task=task, device=device)
    axis = restored.meta["restoration"]["axis"]
    moved = [x if axis is None or x.ndim == 2 else torch.movedim(x.as_tensor(), axis, -1)
             for x in (image, restored, label)]
    error = restored.as_tensor() - label.as_tensor()
    return CalibrationRow(
        case=name, task=task, slices=1 if axis is None else int(image.shape[axis]),
        input_psnr_db=mean_slice_psnr(moved[0], moved[2], task),
        restored_psnr_db=mean_slice_psnr(moved[1], moved[2], task),
        rank_correlation=patch_rank_correlation(confidence, error, patch=patch, axis=axis),
    )


def _cases(args: argparse.Namespace) -> list[tuple[str, MetaTensor, MetaTensor, str]]:
    if args.datalist is None:
        from monai_tat.demo.samples import make_sample

        samples = [make_sample(task, size=args.size, slices=args.slices or 4) for task in ("ct", "pet", "mri")]
        return [(f"{s.task} phantom", s.low_quality, s.reference, s.task) for s in samples]
    from monai_tat.data import load_datalist

    cases = []
    for item in load_datalist(args.datalist, key=args.key):
        image, label = (_central_slices(read_volume(item[k]), args.slices) for k in ("image", "label"))
        cases.append((item.get("case", Path(item["image"]).name), image, label, item["task"]))
    return cases


def _table(rows: list[CalibrationRow]) -> str:
    lines = [f"{'case':<36} {'task':<4} {'slices':>6} {'input dB':>9} {'restored dB':>12} {'rank corr':>10}"]
    for r in rows:
        lines.append(f"{r.case:<36} {r.task:<4} {r.slices:>6} {r.input_psnr_db:>9.2f} {r.restored_psnr_db:>12.2f} "
                     f"{r.rank_correlation:>10.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks confidence",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--datalist", type=Path, default=None,
                        help="datalist JSON of image / label / task items (default: the demo phantoms)")
    parser.add_argument("--key", default="testing", help="list of the datalist to use (default: testing)")
    parser.add_argument("--model", default="tat", help="'tat', 'amir' (shipped weights) or a checkpoint")
    parser.add_argument("--slices", type=int, default=None, help="central slices per volume (default: all)")
    parser.add_argument("--size", type=int, default=128, help="phantom in-plane matrix (no datalist)")
    parser.add_argument("--patch", type=int, default=16, help="patch side in pixels (default 16)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        network = load_model(args.model, args.device)
        rows = [measure_case(name, image, label, task, network, args.device, args.patch)
                for name, image, label, task in _cases(args)]
    except UserInputError as err:
        print(f"error: {err}")
        return 2
    print(_table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "patch": args.patch,
                                         "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
