"""Per-slice gain of the shipped weights on held-out pairs: who gains, who loses, slice by slice.

For every item of a datalist (``{"image": low quality, "label": reference, "task"}``, paths
relative to the datalist's folder) of the chosen task, each network restores the low-quality
volume with the default restore (as ``monai-tat restore`` does: k-space consistency ``auto``),
and every slice is scored against the reference in the papers' convention
(:func:`monai_tat.metrics.evaluator.score_volumes`, the evaluator of ``monai-tat evaluate`` and the
bundles). Prints, per volume and network: slices, input PSNR, mean gain over the input, median
gain, the fraction of slices losing more than 0.1 dB and the worst slice; ``--json`` writes every
slice's gain. ``--baseline OLD.json`` (an earlier run's ``--json``) adds the earlier mean gain and
loss fraction beside each row, for a before / after table.

Runs on one CPU thread (``--threads``) so that it leaves the machine to others.

Usage::

    python recipes/demo_weights/slice_gains.py CACHE/heldout/datalist.json --task mri --json gains.json
    python recipes/demo_weights/slice_gains.py CACHE/heldout/datalist.json --task mri --baseline old.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from monai_tat.inference import load_model, restore_volume
from monai_tat.io import read_volume
from monai_tat.metrics.evaluator import score_volumes

LOSS_DB = 0.1


def slice_gains(datalist: Path, task: str, networks: list[str]) -> list[dict]:
    """One row per (volume, network): per-slice input PSNR and gain (dB)."""
    items = [item for item in json.loads(datalist.read_text())["testing"] if item.get("task") == task]
    if not items:
        raise SystemExit(f"{datalist} has no {task} item in its 'testing' list")
    models = {name: load_model(name, "cpu") for name in networks}
    rows = []
    for item in items:
        low = read_volume(datalist.parent / item["image"])
        reference = read_volume(datalist.parent / item["label"])
        before = score_volumes(low, reference, task)["psnr"]
        for name, model in models.items():
            restored = restore_volume(low, model, task=task, device="cpu")
            after = score_volumes(restored, reference, task)["psnr"]
            gains = after - before
            rows.append({"volume": Path(item["image"]).name, "network": name, "input_psnr": before.tolist(),
                         "gain": gains.tolist(), "kspace_consistency": restored.meta["restoration"]["kspace_consistency"]["applied"]})
            print(f"  {rows[-1]['volume']} {name}: {float(np.mean(gains)):+.3f} dB", file=sys.stderr, flush=True)
    return rows


def _summary(gains: list[float]) -> tuple[float, float, float, float]:
    g = np.asarray(gains, dtype=np.float64)
    return float(g.mean()), float(np.median(g)), float((g < -LOSS_DB).mean()), float(g.min())


def print_table(rows: list[dict], baseline: list[dict] | None) -> None:
    old = {(r["volume"], r["network"]): r for r in baseline or []}
    header = "| volume | network | slices | input PSNR | mean gain | median gain | slices < -0.1 dB | worst |"
    if baseline:
        header += " baseline mean gain | baseline slices < -0.1 dB |"
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for row in rows:
        mean, median, losing, worst = _summary(row["gain"])
        line = (f"| {row['volume']} | {row['network']} | {len(row['gain'])} | {np.mean(row['input_psnr']):.2f} | "
                f"{mean:+.3f} | {median:+.3f} | {100 * losing:.1f} % | {worst:+.2f} |")
        if baseline:
            earlier = old.get((row["volume"], row["network"]))
            if earlier is None:
                line += " - | - |"
            else:
                b_mean, _, b_losing, _ = _summary(earlier["gain"])
                line += f" {b_mean:+.3f} | {100 * b_losing:.1f} % |"
        print(line)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("datalist", type=Path, help="datalist JSON with a 'testing' list of image/label/task items")
    p.add_argument("--task", default="mri")
    p.add_argument("--networks", nargs="+", default=["tat", "amir"], help="model specs (default: the shipped tat, amir)")
    p.add_argument("--json", type=Path, default=None, help="write every slice's gain here")
    p.add_argument("--baseline", type=Path, default=None, help="an earlier --json, shown beside each row")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = slice_gains(args.datalist, args.task, args.networks)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    print_table(rows, json.loads(args.baseline.read_text()) if args.baseline else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
