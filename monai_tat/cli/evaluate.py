"""``monai-tat evaluate PRED REF --task T``: PSNR / SSIM / RMSE in the papers' convention.

Files or folders (images matched by name, suffix ignored). Every 2D slice is scored with its own
data range (3D volumes along their axial axis); the means are over all slices, as the papers'
tables. With ``--baseline OTHER`` the prediction is compared with another method on the same
slices (mean difference, paired t-test).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS, get_task

if TYPE_CHECKING:
    from monai_tat.metrics import SliceScores

# Heavy imports (MONAI metrics, tqdm) happen inside the functions so that `monai-tat --help` is fast.

__all__ = ["register", "run", "match_images"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="PSNR / SSIM / RMSE of restored images against references, as in the papers",
        description="Score restored images against references in physical units: both clipped to the task's "
        f"window ({_windows_text()}), data range from each reference slice, "
        "11x11 Gaussian SSIM with zero padding. Means are over all slices.",
    )
    p.add_argument("pred", help="restored image, or a folder of them")
    p.add_argument("ref", help="reference (high-quality) image, or a folder matched by name")
    p.add_argument("--task", required=True, choices=TASKS, help="evaluation window")
    p.add_argument("--baseline", default=None,
                   help="another method's images (file or folder) for a paired comparison with PRED")
    p.add_argument("--csv", default=None, help="write per-image rows and the mean to this CSV file")
    p.add_argument("--axis", type=int, choices=(0, 1, 2), default=None,
                   help="slicing axis of 3D volumes (default: the axial axis from the reference's orientation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _windows_text() -> str:
    return ", ".join(f"{t.upper()} [{get_task(t).eval_window[0]:g}, {get_task(t).eval_window[1]:g}] {get_task(t).units}"
                     for t in TASKS)


def _list_images(folder: Path) -> dict[str, Path]:
    from monai_tat.io.volume import IMAGE_SUFFIXES, image_suffix

    images = {}
    for path in sorted(folder.iterdir()):
        suffix = image_suffix(path)
        if path.is_file() and suffix in IMAGE_SUFFIXES:
            images[path.name[: -len(suffix)]] = path
    return images


def match_images(pred: Path, ref: Path, baseline: Path | None = None) -> list[tuple[str, Path, Path, Path | None]]:
    """Pair predictions with references (and baselines) by name without image suffix.

    Returns ``[(name, pred, ref, baseline or None), ...]``.

    Raises:
        UserInputError: missing paths, a file paired with a folder, an empty folder, or a
            prediction without a reference / baseline of the same name.
    """
    for role, path in (("prediction", pred), ("reference", ref), ("baseline", baseline)):
        if path is not None and not path.exists():
            raise UserInputError(f"{role} not found: {path}")
    paths = [p for p in (pred, ref, baseline) if p is not None]
    if all(p.is_file() for p in paths):
        return [(pred.name, pred, ref, baseline)]
    if not all(p.is_dir() for p in paths):
        raise UserInputError("give PRED, REF (and --baseline) all as files or all as folders")
    preds, refs = _list_images(pred), _list_images(ref)
    bases = _list_images(baseline) if baseline is not None else {}
    if not preds:
        from monai_tat.io.volume import IMAGE_SUFFIXES

        raise UserInputError(f"{pred} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for role, found in (("reference", refs), ("baseline", bases if baseline is not None else None)):
        if found is None:
            continue
        missing = [name for name in preds if name not in found]
        if missing:
            shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            raise UserInputError(f"{len(missing)} prediction(s) have no {role} of the same name: {shown}")
    return [(name, preds[name], refs[name], bases.get(name)) for name in preds]


def run(args: argparse.Namespace) -> int:
    """Score every image, print the table (and the paired comparison), write the CSV."""
    from tqdm import tqdm

    from monai_tat.io import check_output_path
    from monai_tat.metrics import SliceScores, score_files

    pred, ref = Path(args.pred), Path(args.ref)
    baseline = Path(args.baseline) if args.baseline else None
    pairs = match_images(pred, ref, baseline)
    if args.csv:
        check_output_path(args.csv, overwrite=args.overwrite, inputs=[p for p in (pred, ref, baseline) if p])

    scores = SliceScores()
    for name, pred_path, ref_path, base_path in tqdm(pairs, desc="evaluating", unit="image",
                                                      disable=args.quiet or len(pairs) == 1, file=sys.stderr):
        values = score_files(pred_path, ref_path, args.task, args.axis)
        base_values = score_files(base_path, ref_path, args.task, args.axis) if base_path is not None else None
        scores.add(name, values, base_values)

    _print_table(scores.rows, scores.summary(), args.task)
    if baseline is not None:
        _print_comparison(scores, args.task)
    if args.csv:
        scores.write_csv(args.csv, overwrite=args.overwrite)
    return 0


def _print_table(rows: list[dict], mean: dict, task: str) -> None:
    width = max(12, *(len(r["image"]) for r in rows))
    print(f"{'image':<{width}}  {'slices':>6}  {'PSNR dB':>8}  {'SSIM':>7}  {'RMSE ' + get_task(task).units:>10}")
    for row in rows:
        print(f"{row['image']:<{width}}  {row['n']:>6d}  {row['psnr']:>8.3f}  {row['ssim']:>7.4f}  {row['rmse']:>10.4f}")
    print(f"{'mean':<{width}}  {mean['n']:>6d}  {mean['psnr']:>8.3f}  {mean['ssim']:>7.4f}  {mean['rmse']:>10.4f}")
    skipped = mean["n_skipped"]
    if skipped:
        print(f"({skipped} slice(s) with a constant reference were left out: PSNR / SSIM undefined)")


def _print_comparison(scores: SliceScores, task: str) -> None:
    print("paired comparison, prediction - baseline (paired t-test over slices):")
    units = {"psnr": "dB", "ssim": "", "rmse": get_task(task).units}
    for m, c in scores.comparison().items():
        mark = " *" if c.significant() else ""
        print(f"  {m.upper():<5} {c.mean_a:10.4f} vs {c.mean_b:10.4f}  difference {c.mean_difference:+.4f} {units[m]}"
              f"  p = {c.p_value:.3g}  (n = {c.n}){mark}")
