"""Seconds per training batch of a bundle's ``train.json`` data loader, and of its network step.

The bundles cache each whole training volume (``CacheDataset``) and cut one random patch of one
slice per sample. ``copy_cache`` decides whether each sample first deep-copies its cached volume
(MONAI's default, a guard against random transforms that change their input in place) or reads it
as it is (the bundles' setting: their random transforms return new tensors). This times both in the
same run, on CT-, PET- and MRI-sized volumes written to a temporary folder (or a datalist of
yours), and one optimiser step of the bundle's network on a batch of the same size, so that the
two can be compared: when a batch takes longer to load than to train on, the loader sets the pace.

Usage::

    python -m monai_tat.benchmarks train-loader                         # synthetic volumes, workers 0
    python -m monai_tat.benchmarks train-loader --workers 0 4 --batches 20 --datalist CACHE/pairs/datalist.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from monai_tat.errors import UserInputError

__all__ = ["LoaderRow", "synthetic_datalist", "time_loader", "time_network_step", "main"]

REPO = Path(__file__).resolve().parents[2]
#: (task, shape) of the synthetic training volumes: a CT, a PET and an MRI of common sizes.
SYNTHETIC_SHAPES = {"ct": (512, 512, 64), "pet": (192, 192, 96), "mri": (256, 256, 96)}


@dataclass
class LoaderRow:
    """Loader seconds per batch (median after a warm-up batch) for one setting."""

    copy_cache: bool
    workers: int
    batch: int
    seconds_per_batch: float


def synthetic_datalist(folder: Path, per_task: int = 2, seed: int = 0) -> Path:
    """Write ``per_task`` random (image, label) NIfTI pairs per task into ``folder`` and a datalist
    (``training`` and ``validation``) naming them; returns the datalist's path."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    items = []
    for task, shape in SYNTHETIC_SHAPES.items():
        for index in range(per_task):
            names = {}
            for key in ("image", "label"):
                path = folder / f"{task}_{index}_{key}.nii"
                nib.save(nib.Nifti1Image(rng.random(shape, dtype=np.float32), np.eye(4)), str(path))
                names[key] = path.name
            items.append({**names, "task": task})
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"training": items, "validation": items[:1]}), encoding="utf-8")
    return datalist


def _parser(bundle: Path, datalist: Path, patch: int, samples_per_task: int, workers: int, copy_cache: bool):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update({
        "bundle_root": str(bundle), "dataset_dir": str(datalist.parent), "datalist": str(datalist),
        "patch_size": [patch, patch], "samples_per_task": samples_per_task, "num_workers": workers,
        "train#dataset#copy_cache": copy_cache, "device": "$torch.device('cpu')",
    })
    return parser


def time_loader(bundle: Path, datalist: Path, *, copy_cache: bool, workers: int, batches: int, patch: int,
                samples_per_task: int) -> LoaderRow:
    """Build the bundle's training data loader with these settings and time ``batches`` batches
    after one warm-up batch (which also starts the worker processes)."""
    parser = _parser(bundle, datalist, patch, samples_per_task, workers, copy_cache)
    loader = parser.get_parsed_content("train#dataloader")
    iterator = iter(loader)
    first = next(iterator)
    seconds = []
    for _ in range(batches):
        start = time.perf_counter()
        next(iterator)
        seconds.append(time.perf_counter() - start)
    del iterator, loader
    return LoaderRow(copy_cache, workers, int(first["image"].shape[0]), float(np.median(seconds)))


def time_network_step(bundle: Path, datalist: Path, *, batch: int, patch: int, device: str, steps: int = 4) -> float:
    """Median seconds of one optimiser step (forward, loss, backward, update) of the bundle's
    network and loss on a random batch of ``batch`` patches, on ``device``."""
    parser = _parser(bundle, datalist, patch, 1, 0, False)
    target = torch.device(device)
    network = parser.get_parsed_content("network_def").to(target).train()
    loss_fn = parser.get_parsed_content("loss_def").to(target)
    optimizer = torch.optim.AdamW([*network.parameters(), *loss_fn.parameters()], lr=1e-4)
    image, label = (torch.rand(batch, 1, patch, patch, device=target) for _ in range(2))
    seconds = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = loss_fn(network(image), label, image=image)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if target.type == "cuda":
            torch.cuda.synchronize(target)
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds[1:]))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks train-loader", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(REPO / "bundles" / "tat_allinone"), help="bundle folder (default: the TAT bundle)")
    p.add_argument("--datalist", default=None, help="datalist JSON of training pairs (default: synthetic volumes)")
    p.add_argument("--workers", type=int, nargs="+", default=[0], help="data loader worker processes to time")
    p.add_argument("--batches", type=int, default=10, help="timed batches per setting (default 10)")
    p.add_argument("--patch", type=int, default=64, help="patch size (default 64)")
    p.add_argument("--samples-per-task", type=int, default=4, help="patches of each task per batch (default 4)")
    p.add_argument("--device", default="cpu", help="device of the network step (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = p.parse_args(argv)
    bundle = Path(args.bundle)
    if not (bundle / "configs" / "train.json").is_file():
        raise UserInputError(f"no configs/train.json in {bundle}: give --bundle, a bundle folder of a source checkout")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.datalist is None:
            datalist = synthetic_datalist(Path(tmp))
            source = "synthetic " + ", ".join(f"{t} {'x'.join(map(str, s))}" for t, s in SYNTHETIC_SHAPES.items())
        else:
            datalist = Path(args.datalist).resolve()
            if not datalist.is_file():
                raise UserInputError(f"--datalist {datalist} does not exist")
            source = str(datalist.name)
        rows = [time_loader(bundle, datalist, copy_cache=copy, workers=workers, batches=args.batches,
                            patch=args.patch, samples_per_task=args.samples_per_task)
                for workers in args.workers for copy in (True, False)]
        step = time_network_step(bundle, datalist, batch=rows[0].batch, patch=args.patch, device=args.device)
    print(f"{bundle.name} train.json data loader, {source}; patch {args.patch}, batch {rows[0].batch}; "
          f"torch threads {torch.get_num_threads()}")
    print("| copy_cache | workers | s / batch | patches / s | network step on "
          f"{args.device}: {step:.3f} s |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        copied = next(r for r in rows if r.workers == row.workers and r.copy_cache)
        ratio = copied.seconds_per_batch / row.seconds_per_batch
        print(f"| {row.copy_cache} | {row.workers} | {row.seconds_per_batch:.4f} | {row.batch / row.seconds_per_batch:.0f} | "
              f"{'' if row.copy_cache else f'{ratio:.1f}x the speed of copy_cache true'} |")
    return 0
