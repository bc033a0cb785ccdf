"""Train the shipped demo weights: compact TAT and AMIR, all-in-one on simulated CT, PET and MRI pairs.

Reproducible (fixed seeds) and CPU-sized::

    python -m monai_tat.demo.train --out monai_tat/weights              # both models, one after the other
    python -m monai_tat.demo.train --out monai_tat/weights --model tat  # one model (run two in parallel)
    python -m monai_tat.demo.train --out /tmp/w --quick                 # seconds: CI smoke run

Data: a fixed bank of paired 2D slices is simulated once (:mod:`monai_tat.demo.phantoms` rendered
in HU / SUV / MR units, degraded by the package's simulators with randomised strength) and cached;
training draws random crops from it, with flips and 90-degree rotations. Intensities go to the
networks' [0, 1] range with :func:`monai_tat.transforms.model_intensity_transform` exactly as the
inference engine does (CT and PET clipped; MRI percentiles of the low-quality image).

Held-out metrics (fresh phantoms from another seed, restored through
:func:`monai_tat.inference.restore_volume`, scored with :mod:`monai_tat.metrics`) are printed and
written to ``<out>/<model>_demo_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from monai_tat.demo.phantoms import phantom_slice

__all__ = [
    "MODEL_CONFIGS",
    "QUICK_CONFIGS",
    "TASK_SETTINGS",
    "simulate_pair",
    "normalise_pair",
    "build_bank",
    "train_model",
    "evaluate",
    "save_weights",
    "main",
]

#: The shipped configurations (``name`` + constructor kwargs of :func:`monai_tat.networks.build_network`).
MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "tat": {"name": "TAT", "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "dim": 16,
            "num_blocks": [2, 2, 2, 2], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8],
            "ffn_expansion_factor": 2.66},
    "amir": {"name": "AMIR", "spatial_dims": 2, "in_channels": 1, "out_channels": 1, "dim": 16,
             "num_blocks": [2, 2, 2, 2], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8],
             "ffn_expansion_factor": 2.66},
}
#: Tiny configurations of ``--quick`` (CI).
QUICK_CONFIGS: dict[str, dict[str, Any]] = {
    "tat": {**MODEL_CONFIGS["tat"], "dim": 8, "num_blocks": [1, 1, 1, 1]},
    "amir": {**MODEL_CONFIGS["amir"], "dim": 6, "num_blocks": [1, 1, 1, 1]},
}

#: Per task: slice size (pixels) and the randomised simulation parameters of the bank.
TASK_SETTINGS: dict[str, dict[str, Any]] = {
    # CT: quarter dose +- (0.15-0.35), 0.6-1.4 mm pixels, and a full-dose fluence (log-uniform)
    # lowered from the simulator's 8e5 /mm^2 so that the 256-pixel phantoms, smaller and less
    # attenuating than a 512-pixel abdomen, get clinical quarter-dose noise (about 10-35 HU).
    "ct": {"size": 256, "dose_fraction": (0.15, 0.35), "pixel_mm": (0.6, 1.4),
           "incident_photons_per_mm2": (2.0e4, 1.5e5)},
    # PET: dose reduction factor 8-16 around the papers' 12; count level x0.6-x1.6 of the default.
    "pet": {"size": 160, "dose_reduction_factor": (8.0, 16.0), "counts_per_suv_pixel": (120.0, 320.0),
            "pixel_mm": (2.5, 4.5)},
    # MRI: the papers' 4x k-space truncation (deterministic).
    "mri": {"size": 256, "factor": 4.0},
}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- data -------------------------------------------------------------------------------------


def simulate_pair(task: str, rng: np.random.Generator, size: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """One random phantom slice and its simulated low-quality partner, both in physical units.

    Returns ``(lq, hq, params)`` with ``(H, W)`` float32 arrays and the simulation parameters used.
    """
    from monai_tat.transforms import KSpaceTruncation, LowCountPET, LowDoseCT

    cfg = TASK_SETTINGS[task]
    n = int(size or cfg["size"])
    seed = int(rng.integers(0, 2**31 - 1))
    if task == "ct":
        spacing = float(rng.uniform(*cfg["pixel_mm"]))
        hq = phantom_slice(rng, "ct", (n, n), pixel_mm=spacing)
        fraction = float(rng.uniform(*cfg["dose_fraction"]))
        fluence = float(np.exp(rng.uniform(*np.log(cfg["incident_photons_per_mm2"]))))
        lq = LowDoseCT(dose_fraction=fraction, pixel_spacing_mm=spacing, incident_photons_per_mm2=fluence, seed=seed)(hq)
        return np.asarray(lq, np.float32), hq, {"dose_fraction": fraction, "pixel_mm": spacing,
                                                "incident_photons_per_mm2": fluence}
    if task == "pet":
        spacing = float(rng.uniform(*cfg["pixel_mm"]))
        hq = phantom_slice(rng, "pet", (n, n), pixel_mm=spacing)
        drf = float(rng.uniform(*cfg["dose_reduction_factor"]))
        counts = float(rng.uniform(*cfg["counts_per_suv_pixel"]))
        lq = LowCountPET(dose_reduction_factor=drf, counts_per_suv_pixel=counts, seed=seed)(hq)
        return np.asarray(lq, np.float32), hq, {"dose_reduction_factor": drf, "counts_per_suv_pixel": counts}
    hq = phantom_slice(rng, "mri", (n, n))
    lq = KSpaceTruncation(cfg["factor"])(hq)
    return np.asarray(lq, np.float32), hq, {"factor": cfg["factor"]}


def normalise_pair(task: str, lq: np.ndarray, hq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images in the model's [0, 1] range, as the inference engine maps the input.

    CT / PET: the fixed model window, clipped. MRI: the percentiles of the *low-quality* image (the
    engine sees only that) applied to both, unclipped.
    """
    from monai_tat.transforms import model_intensity_transform

    transform = model_intensity_transform(task)
    if task in ("ct", "pet"):
        out = [np.clip(np.asarray(transform(torch.from_numpy(x)).as_tensor()), 0.0, 1.0) for x in (lq, hq)]
        return out[0].astype(np.float32), out[1].astype(np.float32)
    lo, hi = transform.bounds(torch.from_numpy(lq))
    scale = (hi - lo) if hi > lo else 1.0
    return ((lq - lo) / scale).astype(np.float32), ((hq - lo) / scale).astype(np.float32)


def build_bank(
    per_task: int, seed: int, tasks: tuple[str, ...] = ("ct", "pet", "mri"), size_scale: float = 1.0,
    physical: bool = False, progress: Callable[[str], None] | None = None,
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``{task: [(lq, hq), ...]}`` of ``per_task`` simulated pairs each (normalised unless ``physical``)."""
    bank: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for task in tasks:
        rng = np.random.default_rng([seed, ("ct", "pet", "mri").index(task)])
        size = max(32, int(round(TASK_SETTINGS[task]["size"] * size_scale / 8)) * 8)
        pairs = []
        start = time.time()
        for _ in range(per_task):
            lq, hq, _params = simulate_pair(task, rng, size)
            pairs.append((lq, hq) if physical else normalise_pair(task, lq, hq))
        bank[task] = pairs
        if progress:
            progress(f"bank {task}: {per_task} pairs of {size}x{size} in {time.time() - start:.1f} s")
    return bank


def _save_bank(bank: dict[str, list[tuple[np.ndarray, np.ndarray]]], path: Path) -> None:
    arrays = {f"{task}_{i}": np.stack(pair) for task, pairs in bank.items() for i, pair in enumerate(pairs)}
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_bank(path: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    bank: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    with np.load(path) as data:
        for key in sorted(data.files, key=lambda k: (k.split("_")[0], int(k.split("_")[1]))):
            task = key.split("_")[0]
            pair = data[key]
            bank.setdefault(task, []).append((pair[0], pair[1]))
    return bank


class CropSampler:
    """Task-balanced batches of random paired crops with flips / rotations (and MRI scale jitter)."""

    def __init__(self, bank: dict[str, list[tuple[np.ndarray, np.ndarray]]], crop: int, per_task: int, seed: int) -> None:
        self.bank, self.crop, self.per_task = bank, crop, per_task
        self.rng = np.random.default_rng(seed)

    def _crop(self, lq: np.ndarray, hq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = hq.shape
        c = min(self.crop, h, w)
        for _ in range(6):  # prefer crops with some anatomy in them
            y, x = int(self.rng.integers(0, h - c + 1)), int(self.rng.integers(0, w - c + 1))
            if hq[y : y + c, x : x + c].std() > 0.01:
                break
        a, b = lq[y : y + c, x : x + c], hq[y : y + c, x : x + c]
        k = int(self.rng.integers(0, 4))
        a, b = np.rot90(a, k), np.rot90(b, k)
        if self.rng.random() < 0.5:
            a, b = a[:, ::-1], b[:, ::-1]
        return a, b

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lq, hq)`` tensors ``(B, 1, crop, crop)`` with ``per_task`` samples of every task."""
        lqs, hqs = [], []
        for task, pairs in self.bank.items():
            for _ in range(self.per_task):
                lq, hq = pairs[int(self.rng.integers(0, len(pairs)))]
                a, b = self._crop(lq, hq)
                if task == "mri":  # volume percentiles put a slice anywhere in about [0, 1.2]
                    s = self.rng.uniform(0.7, 1.15)
                    a, b = a * s, b * s
                lqs.append(np.ascontiguousarray(a))
                hqs.append(np.ascontiguousarray(b))
        return torch.from_numpy(np.stack(lqs)[:, None]).float(), torch.from_numpy(np.stack(hqs)[:, None]).float()


# -- training ---------------------------------------------------------------------------------


def _cosine(progress: float, warmup: float, floor: float) -> float:
    """Learning-rate factor at training ``progress`` in [0, 1]: linear warm-up, then cosine to ``floor``."""
    if progress < warmup:
        return max(progress / warmup, 0.01)
    t = (progress - warmup) / max(1e-9, 1.0 - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def train_model(
    model_name: str, config: dict[str, Any], bank: dict[str, list[tuple[np.ndarray, np.ndarray]]], iterations: int,
    *, crop: int = 64, per_task: int = 2, lr: float = 3e-4, seed: int = 0, ema_decay: float = 0.995,
    time_limit_s: float | None = None, log_every: int = 50, checkpoint: Callable[[nn.Module, int], None] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train one network; return the EMA network (eval mode) and a summary of the run.

    ``init_state`` continues from earlier weights (a second cosine cycle, warm restart).

    TAT uses :class:`~monai_tat.losses.TaskAdaptiveLoss` (its parameters optimised with the
    network, AdamW betas (0.9, 0.99)); AMIR uses :class:`~monai_tat.losses.AMIRLoss` (L1 + 0.001
    balance) with Adam. Learning rate: 5 % linear warm-up, then cosine to 1 % of ``lr``; the EMA
    starts at 30 % of training so that early weights do not linger in it.

    Training progress is ``step / iterations``, or, with ``time_limit_s``, the larger of that and
    ``elapsed / time_limit_s``: on a slower machine the schedule completes within the time limit
    with fewer iterations (the summary records how many ran). Without a time limit the run is
    exactly reproducible for a seed.
    """
    from monai_tat.losses import AMIRLoss, TaskAdaptiveLoss
    from monai_tat.networks import build_network
    from monai_tat.training.ema import create_ema, unwrap_model

    torch.manual_seed(seed)
    net = build_network(config["name"], **{k: v for k, v in config.items() if k != "name"})
    if init_state is not None:
        net.load_state_dict(init_state)
    if config["name"] == "TAT":
        loss_fn: nn.Module = TaskAdaptiveLoss()
        params = [*net.parameters(), *loss_fn.parameters()]
        opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    else:
        loss_fn = AMIRLoss(balance_weight=1e-3)
        opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    sampler = CropSampler(bank, crop, per_task, seed + 1)
    ema = None
    start, running, done, since_log = time.time(), 0.0, 0, 0
    progress = 0.0
    net.train()
    while progress < 1.0:
        for group in opt.param_groups:
            group["lr"] = lr * _cosine(progress, 0.05, 0.01)
        lq, hq = sampler.batch()
        loss = loss_fn(net(lq), hq, image=lq)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if progress >= 0.3:
            if ema is None:
                ema = create_ema(net, ema_decay)
            ema.update_parameters(net)
        running += float(loss.detach())
        done += 1
        since_log += 1
        elapsed = time.time() - start
        progress = done / iterations
        if time_limit_s is not None:
            progress = max(progress, elapsed / time_limit_s)
        if done % log_every == 0 or progress >= 1.0:
            _log(f"{model_name} it {done}/{iterations} progress {min(progress, 1.0):.3f} loss {running / since_log:.5f} "
                 f"lr {opt.param_groups[0]['lr']:.2e} {elapsed / done:.2f} s/it")
            running, since_log = 0.0, 0
            if checkpoint is not None:
                checkpoint(unwrap_model(ema) if ema is not None else net, done)
    final = unwrap_model(ema) if ema is not None else net
    final.eval()
    summary = {"iterations": done, "planned_iterations": iterations,
               "time_limited": bool(done < iterations), "wall_s": round(time.time() - start, 1),
               "batch": per_task * len(bank), "crop": crop, "lr": lr, "ema_decay": ema_decay, "seed": seed}
    return final, summary


# -- evaluation and saving --------------------------------------------------------------------


def evaluate(network: nn.Module, pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> dict[str, dict[str, float]]:
    """Mean PSNR / SSIM (papers' convention) of LQ and of the restored image against HQ, per task.

    ``pairs`` hold physical units; each LQ slice goes through :func:`monai_tat.inference.restore_volume`
    (the engine's own intensity handling).
    """
    from monai_tat.inference import restore_volume
    from monai_tat.metrics import psnr, ssim

    results: dict[str, dict[str, float]] = {}
    for task, items in pairs.items():
        scores: dict[str, list[float]] = {"lq_psnr": [], "lq_ssim": [], "psnr": [], "ssim": []}
        for lq, hq in items:
            restored = np.asarray(restore_volume(torch.from_numpy(lq), network, task=task, device="cpu"))
            scores["lq_psnr"].append(psnr(lq, hq, task))
            scores["lq_ssim"].append(ssim(lq, hq, task))
            scores["psnr"].append(psnr(restored, hq, task))
            scores["ssim"].append(ssim(restored, hq, task))
        results[task] = {key: float(np.mean(v)) for key, v in scores.items()} | {"slices": len(items)}
    return results


def save_weights(network: nn.Module, config: dict[str, Any], path: Path, info: dict[str, Any] | None = None) -> None:
    """Write a safetensors file with ``network_config`` (and ``training``) JSON metadata, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().float().contiguous().cpu() for k, v in network.state_dict().items()}
    metadata = {"network_config": json.dumps(config), "format": "pt"}
    if info is not None:
        metadata["training"] = json.dumps(info)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    save_file(state, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    path.chmod(0o644)


def save_bundle_weights(network: nn.Module, config: dict[str, Any], path: Path) -> None:
    """``models/model.pt`` of a MONAI bundle: ``{"state_dict": ..., "network_config": ...}`` (weights-only loadable)."""
    state = {k: v.detach().float().contiguous().cpu() for k, v in network.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save({"state_dict": state, "network_config": config}, tmp)
    os.replace(tmp, path)


_BUNDLES = {"tat": "tat_allinone", "amir": "amir_allinone"}


def _default_bundles_dir() -> Path | None:
    repo_bundles = Path(__file__).resolve().parents[2] / "bundles"
    return repo_bundles if repo_bundles.is_dir() else None


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m monai_tat.demo.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for <model>_demo.safetensors and metrics")
    p.add_argument("--model", choices=("tat", "amir", "both"), default="both")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default 1600; quick 3)")
    p.add_argument("--bank-size", type=int, default=None, help="training pairs per task (default 96; quick 2)")
    p.add_argument("--heldout-size", type=int, default=None, help="held-out pairs per task (default 12; quick 1)")
    p.add_argument("--crop", type=int, default=None, help="training crop size (default 64; quick 32)")
    p.add_argument("--per-task", type=int, default=2, help="crops per task in a batch (default 2)")
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and crops (default 0)")
    p.add_argument("--data-seed", type=int, default=0,
                   help="seed of the training bank (default 0); held-out slices use data seed + 1000")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--cache", default=None, help="npz file caching the training bank (built when missing)")
    p.add_argument("--bank-only", action="store_true", help="build the bank cache and stop")
    p.add_argument("--time-limit-min", type=float, default=None, help="finish the schedule within this many minutes (fewer iterations on a slow machine)")
    p.add_argument("--bundles", default=None, help="bundles folder receiving models/model.pt (default: the repository's)")
    p.add_argument("--no-bundles", action="store_true", help="do not write bundle weights")
    p.add_argument("--init", default=None, metavar="SAFETENSORS",
                   help="continue from these weights (same configuration) with a new cosine cycle; needs one --model")
    p.add_argument("--evaluate-only", action="store_true", help="only measure held-out metrics of the weights in --out")
    p.add_argument("--quick", action="store_true", help="tiny networks and data: a smoke run in seconds")
    args = p.parse_args(argv)

    torch.set_num_threads(max(1, args.threads))
    quick = args.quick
    iterations = args.iterations or (3 if quick else 1600)
    bank_size = args.bank_size or (2 if quick else 96)
    heldout_size = args.heldout_size or (1 if quick else 12)
    crop = args.crop or (32 if quick else 64)
    size_scale = 0.25 if quick else 1.0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cache = Path(args.cache) if args.cache else None
    if args.evaluate_only:
        bank = {}
    elif cache is not None and cache.is_file():
        bank = _load_bank(cache)
        _log(f"bank loaded from {cache}")
    else:
        bank = build_bank(bank_size, args.data_seed, size_scale=size_scale, progress=_log)
        if cache is not None:
            _save_bank(bank, cache)
    if args.bank_only:
        return 0
    # Held-out slices: new phantoms and noise from another seed, never seen in training.
    heldout = build_bank(heldout_size, args.data_seed + 1000, size_scale=size_scale, physical=True)

    models = ("tat", "amir") if args.model == "both" else (args.model,)
    bundles = None if (args.no_bundles or quick) else (Path(args.bundles) if args.bundles else _default_bundles_dir())
    for name in models:
        config = (QUICK_CONFIGS if quick else MODEL_CONFIGS)[name]
        weights = out / f"{name}_demo.safetensors"
        if args.evaluate_only:
            from monai_tat.inference import load_model

            net = load_model(str(weights))
            info = json.loads((out / f"{name}_demo_metrics.json").read_text(encoding="utf-8"))
        else:
            partial = out / f".{name}_demo.inprogress.safetensors"
            init_state, previous = None, []
            if args.init:
                from safetensors import safe_open

                from monai_tat.io import read_checkpoint

                init_state, init_config = read_checkpoint(args.init)
                if init_config != config:
                    raise SystemExit(f"--init {args.init} holds {init_config}, not the {name} configuration {config}")
                with safe_open(args.init, framework="pt") as f:
                    record = json.loads((f.metadata() or {}).get("training", "{}"))
                previous = [*record.pop("previous_phases", []), record]
            net, summary = train_model(
                name, config, bank, iterations, crop=crop, per_task=args.per_task, lr=args.lr, seed=args.seed,
                time_limit_s=None if args.time_limit_min is None else args.time_limit_min * 60,
                log_every=1 if quick else 25,
                checkpoint=None if quick else (lambda m, step: save_weights(m, config, partial, {"step": step})),
                init_state=init_state,
            )
            if previous:
                summary = {**summary, "init": str(args.init), "previous_phases": previous}
            info = {**summary, "bank_per_task": bank_size, "heldout_per_task": heldout_size,
                    "parameters": sum(p.numel() for p in net.parameters()), "simulation": TASK_SETTINGS,
                    "command": "python -m monai_tat.demo.train " + " ".join(argv or [])}
            # Weights first: an evaluation failure must not lose a finished training run.
            save_weights(net, config, weights, info)
            if bundles is not None:
                save_bundle_weights(net, config, bundles / _BUNDLES[name] / "models" / "model.pt")
            partial.unlink(missing_ok=True)
            (out / f"{name}_demo_metrics.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            _log(f"{name}: wrote {weights}")
        metrics = evaluate(net, heldout)
        for task, m in metrics.items():
            _log(f"{name} held-out {task}: LQ {m['lq_psnr']:.2f} dB / {m['lq_ssim']:.4f} -> "
                 f"restored {m['psnr']:.2f} dB / {m['ssim']:.4f} ({m['slices']} slices)")
        info["heldout_metrics"] = metrics
        save_weights(net, config, weights, info)
        (out / f"{name}_demo_metrics.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
