"""Train the shipped demo weights with the bundles' own training stack (``configs/train.json``).

This script only prepares data and settings; the training itself is the bundle's MONAI workflow
(``SupervisedTrainer``, task-balanced sampling, the papers' losses, EMA, warm-up + cosine schedule,
validation with the papers' PSNR, full checkpoints), run through ``monai.bundle.ConfigWorkflow``::

    python recipes/demo_weights/train.py --model tat --out monai_tat/weights           # phantoms only
    python recipes/demo_weights/train.py --model amir --out monai_tat/weights \\
        --datalist CACHE/pairs/datalist.json CACHE/heldout/datalist.json --minutes 90  # + real anatomy
    python recipes/demo_weights/train.py --model tat --out OUT --quick --gate report   # seconds

(``CACHE`` is what ``prepare_data.py`` wrote.) Data: paired phantom volumes
(:func:`pair_simulation.phantom_pair`: :mod:`monai_tat.demo.phantoms` in HU / SUV / MR units,
degraded by the package's simulators with randomised strength) written once as NIfTI with a datalist, plus
any ``--datalist`` of prepared real data (``training`` / ``validation`` / ``testing`` lists of
``{"image", "label", "task"}``). Held-out phantoms (another seed) and the datalists' ``testing``
items are scored at the end with the bundle's ``evaluate.json``.

Resumable: everything lives in ``--work`` (default: a folder per model in the system's temporary
directory). Rerunning the same command continues from the last full checkpoint, and reuses the
phantoms and the iteration budget chosen for ``--minutes``.

``--init W --anchor W --anchor-tasks ct pet`` fine-tunes ``W`` while the samples of the anchored
tasks are trained toward ``W``'s own restorations instead of their references
(:class:`monai_tat.training.TeacherAnchoredLoss`): the other tasks learn, the anchored ones are
held where ``W`` had them; ``--anchor-references`` adds each training reference of an anchored task
as an input of its own, so that they are also held on inputs as quiet as a full-dose scan.

``--export-only --from-checkpoint checkpoint_final.pt`` exports the weight average (EMA) a full
checkpoint holds instead of the best validated weights (the validation lists are small).

``--export-only --average A B ...`` exports and scores the mean of finished weights of one
lineage (e.g. a network and its fine-tuned self) instead of training, written to a new ``--work``.

The held-out gate (:mod:`heldout_gate`): before anything is exported, every held-out volume is
restored with the default restore path users get (``monai-tat restore``: MRI k-space consistency
included) and the weights are refused when any volume's mean PSNR gain over its input is not above
``--gate-min-gain`` (0 dB) or more than ``--gate-max-losing`` (5 %) of its slices lose more than
``--gate-loss-db`` (0.1 dB); ``--gate-task-gain ct=3 pet=3 mri=1`` adds per-task minimum mean gains.
A refusal writes nothing to ``--out`` (nor the bundle) and exits with status 1 and one line naming
each failing volume and its figures. The per-volume table is written to ``<work>/heldout_gate.json``
and ``.md`` either way, and into the metrics file of an export. ``--gate report`` records the verdict
without enforcing it (smoke runs); ``--gate-only WEIGHTS`` gates an existing weight file alone::

    python recipes/demo_weights/train.py --model tat --gate-only monai_tat/weights/tat_demo.safetensors \
        --no-phantoms --datalist CACHE/heldout/datalist.json --work GATE_DIR

Outputs: ``<out>/<model>_demo.safetensors`` (weights of the best validated EMA network, with the
network configuration in the metadata), ``<out>/<model>_demo_metrics.json`` (training settings,
held-out metrics and the gate's per-volume table) and, unless ``--no-bundles`` or ``--quick``, the
bundle's ``models/model.pt`` (plain state dict). ``--size large`` names them ``<model>_large`` and
never writes the bundle.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import heldout_gate
import pair_simulation as sim

__all__ = ["MODEL_SIZES", "LARGE_SIZES", "QUICK_SIZES", "PHANTOM_SIZE", "write_phantom_datalist",
           "training_overrides", "run_workflow", "main"]

BUNDLES = {"tat": "tat_allinone", "amir": "amir_allinone"}

#: Network size of the shipped weights (``network_def`` keys of the bundles' configs).
MODEL_SIZES: dict[str, dict[str, Any]] = {
    "tat": {"dim": 16, "num_blocks": [2, 2, 2, 2], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8]},
    "amir": {"dim": 16, "num_blocks": [2, 2, 2, 2], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8]},
}
#: ``--size large``: the papers' depth (TAT and AMIR block counts, four refinement blocks) at half
#: the papers' width; 10.6 M parameters for TAT (the papers' 41.7 M at dim 48). Trained on a GPU.
LARGE_SIZES: dict[str, dict[str, Any]] = {
    "tat": {"dim": 24, "num_blocks": [4, 6, 6, 8], "num_refinement_blocks": 4, "heads": [1, 2, 4, 8]},
    "amir": {"dim": 24, "num_blocks": [5, 7, 7, 9], "num_refinement_blocks": 4, "heads": [1, 2, 4, 8]},
}
#: Tiny networks of ``--quick``.
QUICK_SIZES: dict[str, dict[str, Any]] = {
    "tat": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8]},
    "amir": {"dim": 6, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 2, 4, 8]},
}

#: In-plane matrix of each task's phantom volumes (before ``size_scale``).
PHANTOM_SIZE = {"ct": 256, "pet": 160, "mri": 256}
_TASKS = ("ct", "pet", "mri")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- data ------------------------------------------------------------------------------------


def write_phantom_datalist(folder: Path, per_task: int, seed: int, size_scale: float = 1.0, slices: int = 8,
                           validation_per_task: int = 1, testing_per_task: int = 2) -> Path:
    """Write phantom pairs (:func:`pair_simulation.phantom_pair`) as NIfTI and ``folder/datalist.json``
    (kept and reused when it exists with the same settings).

    ``training`` and ``validation`` use ``seed``; ``testing`` (held out) uses ``seed + 1000``.
    """
    from monai_tat.data.datalist import write_datalist

    datalist_path = folder / "datalist.json"
    settings = {"per_task": per_task, "seed": seed, "size_scale": size_scale, "slices": slices,
                "validation_per_task": validation_per_task, "testing_per_task": testing_per_task}
    if datalist_path.is_file():
        existing = json.loads(datalist_path.read_text(encoding="utf-8"))
        if existing.get("settings") == settings:
            return datalist_path
    lists: dict[str, list[dict[str, str]]] = {"training": [], "validation": [], "testing": []}
    counts = {"training": per_task, "validation": validation_per_task, "testing": testing_per_task}
    for task in _TASKS:
        size = max(32, int(round(PHANTOM_SIZE[task] * size_scale / 8)) * 8)
        dtype = "float32" if task == "pet" else "int16"
        start = time.time()
        for split, count in counts.items():
            rng = np.random.default_rng([seed + (1000 if split == "testing" else 0), _TASKS.index(task),
                                         list(counts).index(split)])
            for n in range(count):
                hq, lq, affine, _ = sim.phantom_pair(task, size, slices, rng)
                item = {"task": task}
                for key, array in (("image", lq), ("label", hq)):
                    rel = f"{task}/{split}_{n:03d}_{'lq' if key == 'image' else 'hq'}.nii.gz"
                    sim.write_nifti(array, affine, folder / rel, dtype)
                    item[key] = rel
                lists[split].append(item)
        _log(f"phantoms {task}: {sum(counts.values())} volumes of {size}x{size}x{slices} in {time.time() - start:.1f} s")
    write_datalist(datalist_path, {**lists, "settings": settings}, overwrite=True)
    return datalist_path


# -- the bundle workflow -----------------------------------------------------------------------


def training_overrides(model: str, work: Path, datalists: list[str], iterations: int, size: dict[str, Any], *,
                       patch: int, samples_per_task: int | dict[str, int], learning_rate: float, seed: int, val_slices: int,
                       workers: int = 0) -> dict:
    """``train.json`` overrides of the demo run: data, network size, schedule and where outputs go."""
    val_interval = max(1, iterations // 10)
    overrides: dict[str, Any] = {
        "ckpt_dir": str(work / "models"), "output_dir": str(work / "eval"), "run_dir": str(work / "checkpoints"),
        "dataset_dir": str(work), "datalist": datalists, "seed": seed,
        "max_iterations": iterations, "val_interval": val_interval,
        "checkpoint_interval": max(1, min(val_interval, 100)), "log_interval": max(1, min(25, val_interval)),
        "patch_size": [patch, patch], "learning_rate": learning_rate, "min_learning_rate": learning_rate * 0.01,
        "warmup_iterations": int(0.05 * iterations),
        # A short run: the average must not keep the early weights (the papers' 0.999 suits 400k iterations).
        "ema_decay": 0.995, "ema_warmup_iterations": int(0.3 * iterations),
        "val_slices": val_slices, "num_workers": workers, "samples_per_task": samples_per_task,
        **{f"network_def#{k}": v for k, v in size.items()},
    }
    if model == "amir":  # the demo balances the tasks for both networks (the AMIR paper draws at random)
        overrides["train#sampler"] = {
            "_target_": "monai_tat.training.TaskBalancedBatchSampler",
            "tasks": "$[item['task'] for item in @train#datalist]",
            "samples_per_task": "@samples_per_task", "seed": "@seed",
        }
    return overrides


def _initialize_from(weights: Path, bundle_dir: Path) -> list[str]:
    """``initialize`` of train.json, plus loading ``weights`` into the network (strictly: same size).

    A full training checkpoint found at resume replaces these weights, so a resumed run continues
    where it stopped.
    """
    from monai_tat.io import read_checkpoint

    read_checkpoint(weights)  # refuse a missing or unreadable file before anything starts
    config = json.loads((bundle_dir / "configs" / "train.json").read_text(encoding="utf-8"))
    load = f"$@network.load_state_dict(monai_tat.io.read_checkpoint({str(weights.resolve())!r})[0])"
    return [*config.get("initialize", []), load]


def run_workflow(bundle_dir: Path, config: str, workflow_type: str, overrides: dict[str, Any]) -> Any:
    """Run ``configs/<config>`` of ``bundle_dir`` with ``overrides`` (as ``python -m monai.bundle run``)."""
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(bundle_dir / "configs" / config), meta_file=str(bundle_dir / "configs" / "metadata.json"),
        logging_file=str(bundle_dir / "configs" / "logging.conf"), workflow_type=workflow_type,
        bundle_root=str(bundle_dir), **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow


def _iterations_for(minutes: float, model: str, size: dict[str, Any], patch: int, batch: int, lr: float) -> int:
    """Iterations that fit ``minutes`` on the device the workflow trains on (train.json: the first
    GPU, else the CPU): a few timed steps of the network alone, plus 15 % for data, EMA and
    validation. On a GPU the data loader can set the pace instead (two runs sharing one GPU and 16
    cores took 3 times the network's time), so give ``--iterations`` there."""
    from monai_tat.losses import AMIRLoss, TaskAdaptiveLoss
    from monai_tat.networks import build_network

    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    net = build_network(model.upper(), spatial_dims=2, in_channels=1, out_channels=1, **size).to(device).train()
    loss_fn = TaskAdaptiveLoss().to(device) if model == "tat" else AMIRLoss().to(device)
    optimizer = torch.optim.AdamW([*net.parameters(), *loss_fn.parameters()], lr=lr)
    x, y = (torch.rand(batch, 1, patch, patch, device=device) for _ in range(2))
    times = []
    for _ in range(4 if device.type == "cpu" else 12):
        start = time.perf_counter()
        loss = loss_fn(net(x), y, image=x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times[len(times) // 2:])) * 1.15
    _log(f"{model}: about {seconds:.3f} s per iteration on {device}")
    del net, optimizer
    return max(10, int(minutes * 60 / seconds))


def _best_network(model: str, weights: Path, size: dict[str, Any]) -> torch.nn.Module:
    """The network of a run's weights file (its best validated EMA: ``<work>/models/model.pt``), on the CPU."""
    from monai_tat.networks import build_network

    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = build_network(model.upper(), spatial_dims=2, in_channels=1, out_channels=1, **size)
    net.load_state_dict(state)
    return net.eval()


def _export(model: str, net: torch.nn.Module, out: Path, info: dict[str, Any], bundle_dir: Path | None,
            name: str = "demo") -> None:
    """Weights of the best validated EMA network: ``<out>/<model>_<name>.safetensors`` with its
    config, and the bundle's plain model.pt."""
    from safetensors.torch import save_file

    from monai_tat.io import atomic_write
    from monai_tat.networks import network_config

    config = network_config(net)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}  # the gate may have used a GPU
    metadata = {"network_config": json.dumps(config), "training": json.dumps(info), "format": "pt"}
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{model}_{name}.safetensors"
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), overwrite=True)
    _log(f"{model}: wrote {weights}")
    if bundle_dir is not None:
        target = bundle_dir / "models" / "model.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda tmp: torch.save(tensors, tmp), overwrite=True)
        _log(f"{model}: wrote {target}")


def _write_average(weights: list[str], work: Path, fractions: list[float] | None = None) -> list[dict[str, Any]]:
    """Write the mean of ``weights`` (weighted by ``fractions`` when given) as
    ``<work>/models/model.pt`` (never over an existing file).

    Returns each source's path, SHA-256 and fraction, for the exported weights' record.
    """
    from monai_tat.io import atomic_write, read_checkpoint
    from monai_tat.training import average_weights, mixing_fractions

    target = work / "models" / "model.pt"
    if target.exists():
        raise SystemExit(f"{target} already exists (a run's best weights?): give --average a new --work folder")
    fractions = mixing_fractions(len(weights), fractions)
    averaged = average_weights([read_checkpoint(w)[0] for w in weights], fractions)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: torch.save(averaged, tmp), overwrite=False)
    _log(f"wrote the mean of {len(weights)} weights to {target}")
    return [{"path": _portable(str(w)), "sha256": _sha256(Path(w)), "fraction": f}
            for w, f in zip(weights, fractions)]


def _anchor(overrides: dict[str, Any], weights: Path, tasks: list[str], fraction: float) -> dict[str, Any]:
    """Make train.json's objective a :class:`~monai_tat.training.TeacherAnchoredLoss` around its own,
    with ``weights`` as the teacher; returns the anchor's record (path, SHA-256, tasks, fraction)."""
    from monai_tat.io import read_checkpoint

    read_checkpoint(weights)  # refuse a missing or unreadable file before anything starts
    overrides["loss"] = (f"$monai_tat.training.TeacherAnchoredLoss(@loss_def, monai_tat.inference.load_model("
                         f"{str(weights.resolve())!r}, @device), {list(tasks)!r}, {float(fraction)!r}).to(@device)")
    return {"path": _portable(str(weights)), "sha256": _sha256(weights),
            "tasks": list(tasks), "teacher_fraction": float(fraction)}


def _reference_inputs(datalists: list[str], tasks: list[str], work: Path) -> Path:
    """Write ``<work>/anchor_references.json``: one training item per training pair of ``tasks`` in
    ``datalists`` whose input is the pair's reference (``image = label``, absolute paths).

    Under :class:`~monai_tat.training.TeacherAnchoredLoss` their target is the anchor's restoration
    of the reference, so those tasks are also held on inputs as clean as a full-dose image.
    """
    from monai_tat.data import load_datalist, write_datalist

    items = [{"image": item["label"], "label": item["label"], "task": item["task"]}
             for item in load_datalist(datalists, "training") if item["task"] in tasks]
    if not items:
        raise SystemExit(f"--anchor-references: no training pair of {', '.join(tasks)} in the datalists")
    path = work / "anchor_references.json"
    write_datalist(path, {"name": "references as inputs of the anchored tasks", "training": items}, overwrite=True)
    _log(f"anchor: {len(items)} references of {', '.join(tasks)} added as training inputs ({path})")
    return path


def _write_checkpoint_ema(work: Path, name: str) -> dict[str, Any]:
    """Write the EMA weights held in the full checkpoint ``<work>/checkpoints/<name>`` as
    ``<work>/models/from_checkpoint.pt``; returns its record (name, iteration, SHA-256)."""
    from monai_tat.io import atomic_write

    path = work / "checkpoints" / name
    if Path(name).name != name or not path.is_file():
        raise SystemExit(f"--from-checkpoint: no checkpoint {name!r} in {work / 'checkpoints'}")
    full = torch.load(path, map_location="cpu", weights_only=True)
    if "ema" not in full or "model" not in full["ema"]:
        raise SystemExit(f"--from-checkpoint: {path} holds no weight average (an 'ema' entry of train.json)")
    target = work / "models" / "from_checkpoint.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, lambda tmp: torch.save(dict(full["ema"]["model"]), tmp), overwrite=True)
    _log(f"wrote the weight average of {path} to {target}")
    return {"checkpoint": name, "iteration": int(full.get("trainer", {}).get("iteration", -1)),
            "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file: the record of which weights a run or an export started from."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _portable(argument: str) -> str:
    """An absolute path as its last folder and name (the weights' metadata names no machine's folders)."""
    path = Path(argument)
    return str(Path(path.parent.name, path.name)) if path.is_absolute() else argument


def _default_bundles_dir() -> Path:
    """The bundles of the checkout that holds this recipe (``recipes/demo_weights/`` -> ``bundles/``)."""
    return Path(__file__).resolve().parents[2] / "bundles"


def _task_samples(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, int]:
    """``["ct=2", "pet=2", "mri=4"]`` -> ``{"ct": 2, "pet": 2, "mri": 4}``; every task once, counts >= 1."""
    counts: dict[str, int] = {}
    for pair in pairs:
        task, _, k = pair.partition("=")
        if task not in _TASKS or task in counts or not k.isdigit() or int(k) < 1:
            parser.error(f"--task-samples takes TASK=K once per task ({' '.join(_TASKS)}), K >= 1; got {pair!r}")
        counts[task] = int(k)
    if set(counts) != set(_TASKS):
        parser.error(f"--task-samples needs a count for each of {', '.join(_TASKS)}; got {', '.join(counts)}")
    return counts


def _task_gains(parser: argparse.ArgumentParser, pairs: list[str]) -> dict[str, float]:
    """``["ct=3", "mri=1"]`` -> ``{"ct": 3.0, "mri": 1.0}``: each task at most once, any subset."""
    gains: dict[str, float] = {}
    for pair in pairs:
        task, _, value = pair.partition("=")
        try:
            gain = float(value)
        except ValueError:
            gain = math.nan
        if task not in _TASKS or task in gains or not math.isfinite(gain):
            parser.error(f"--gate-task-gain takes TASK=DB once per task ({' '.join(_TASKS)}), e.g. ct=3; got {pair!r}")
        gains[task] = gain
    return gains


def _gate_rule(parser: argparse.ArgumentParser, args: argparse.Namespace) -> heldout_gate.GateRule:
    try:
        return heldout_gate.GateRule(min_gain_db=args.gate_min_gain, loss_db=args.gate_loss_db,
                                     max_losing_fraction=args.gate_max_losing,
                                     task_min_gain_db=_task_gains(parser, args.gate_task_gain or []))
    except ValueError as err:
        parser.error(f"gate thresholds: {err}")


def _run_gate(net: torch.nn.Module, weights: str, datalists: list[str], rule: heldout_gate.GateRule,
              work: Path) -> heldout_gate.GateReport:
    """Score the held-out (``testing``) items of ``datalists`` with ``net``; the table goes to ``work``."""
    from monai_tat.data import load_datalist

    items = load_datalist(datalists, key="testing")
    report = heldout_gate.run_gate(items, net, rule, weights=weights, device="auto", log=_log)
    json_path, md_path = heldout_gate.write_report(report, work)
    _log(f"held-out gate: {'passed' if report.passed else 'REFUSED'} ({len(report.volumes)} volumes); table in "
         f"{json_path} and {md_path.name}")
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python recipes/demo_weights/train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=tuple(BUNDLES), required=True)
    p.add_argument("--out", default=None, help="folder for <model>_<size>.safetensors and its metrics (required unless "
                   "--gate-only)")
    p.add_argument("--size", choices=("demo", "large"), default="demo",
                   help="network size: demo (default: the shipped weights, trainable on a CPU) or large (the papers' "
                        "depth at half their width, for a GPU; never written to the bundle, whose configs are the "
                        "demo size)")
    p.add_argument("--datalist", nargs="*", default=[], help="prepared datalist JSON file(s) of real data")
    p.add_argument("--no-phantoms", action="store_true",
                   help="use only the --datalist files (no phantom pairs for training, validation or the held-out set)")
    p.add_argument("--work", default=None, help="run folder (phantoms, checkpoints, logs); default: a temporary folder per model")
    p.add_argument("--iterations", type=int, default=None, help="training iterations (default 2000; quick 4)")
    p.add_argument("--minutes", type=float, default=None, help="choose the iterations to fit this wall time here")
    p.add_argument("--phantoms", type=int, default=None, help="phantom training volumes per task (default 16; quick 1)")
    p.add_argument("--patch", type=int, default=None, help="training patch size (default 64; quick 16)")
    p.add_argument("--samples-per-task", type=int, default=2, help="patches of each task per batch (default 2)")
    p.add_argument("--task-samples", nargs="+", default=None, metavar="TASK=K",
                   help="weight the tasks: patches of each task per batch, e.g. ct=2 pet=2 mri=4 (replaces --samples-per-task)")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (default 3e-4)")
    p.add_argument("--val-slices", type=int, default=4, help="central slices of each validation volume (default 4)")
    p.add_argument("--init", default=None, metavar="WEIGHTS",
                   help="start from these weights (a plain state dict .pt, e.g. the bundle's models/model.pt, or a "
                        ".safetensors file) instead of a random initialisation; a resumed run ignores it")
    p.add_argument("--anchor", default=None, metavar="WEIGHTS",
                   help="hold the --anchor-tasks where these weights restore them: their samples are trained toward "
                        "these weights' output instead of the reference (usually the --init weights)")
    p.add_argument("--anchor-tasks", nargs="+", choices=_TASKS, default=["ct", "pet"], metavar="TASK",
                   help="with --anchor: the tasks to hold (default ct pet)")
    p.add_argument("--anchor-fraction", type=float, default=1.0, metavar="F",
                   help="with --anchor: anchored target = F x the anchor's output + (1 - F) x the reference (default 1)")
    p.add_argument("--anchor-references", action="store_true",
                   help="with --anchor: also train the anchored tasks on their training references as inputs (target: "
                        "the anchor's restoration of them), holding those tasks on inputs quieter than the pairs' own")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=0,
                   help="data loader worker processes (default 0: in the training process; a GPU wants several)")
    p.add_argument("--bundles", default=None, help="bundles folder (default: the repository's)")
    p.add_argument("--no-bundles", action="store_true", help="do not write the bundle's models/model.pt")
    p.add_argument("--quick", action="store_true", help="tiny network and data: a smoke run in seconds")
    p.add_argument("--export-only", action="store_true",
                   help="do not train: export and evaluate the best validated weights a stopped run left in --work")
    p.add_argument("--average", nargs="+", default=None, metavar="WEIGHTS",
                   help="with --export-only: export and evaluate the mean of these weights (one lineage), "
                        "written to <work>/models/model.pt, which must not exist yet")
    p.add_argument("--from-checkpoint", default=None, metavar="NAME",
                   help="with --export-only: export the weight average (EMA) held in this full training checkpoint "
                        "of <work>/checkpoints (e.g. checkpoint_final.pt) instead of the best validated weights, "
                        "written to <work>/models/from_checkpoint.pt")
    p.add_argument("--average-fractions", nargs="+", type=float, default=None, metavar="F",
                   help="with --average: a weighted mean, one fraction per weights file, summing to 1")
    gate = p.add_argument_group(
        "held-out gate", "weights that make a held-out volume worse than its input are not exported; the "
        "per-volume table goes to <work>/heldout_gate.json and .md")
    gate.add_argument("--gate", choices=("enforce", "report", "off"), default="enforce",
                      help="enforce (default): refuse to export weights that fail; report: score and record the "
                           "verdict but export anyway (smoke runs, experiments); off: do not score")
    gate.add_argument("--gate-only", default=None, metavar="WEIGHTS",
                      help="do not train or export: gate this weight file (.safetensors or .pt) on the held-out set; "
                           "exit status 1 when it is refused")
    gate.add_argument("--gate-min-gain", type=float, default=0.0, metavar="DB",
                      help="each held-out volume's mean PSNR gain over its input must be above this (default 0 dB)")
    gate.add_argument("--gate-loss-db", type=float, default=0.1, metavar="DB",
                      help="a slice loses when its PSNR falls by more than this (default 0.1 dB)")
    gate.add_argument("--gate-max-losing", type=float, default=0.05, metavar="FRACTION",
                      help="at most this fraction of a volume's slices may lose (default 0.05)")
    gate.add_argument("--gate-task-gain", nargs="+", default=None, metavar="TASK=DB",
                      help="per-task minimum mean gain over the task's held-out slices, e.g. ct=3 pet=3 mri=1")
    args = p.parse_args(argv)
    if args.out is None and args.gate_only is None:
        p.error("--out is required (the folder for the exported weights), unless --gate-only")
    if args.gate_only is not None and (args.export_only or args.average or args.gate == "off"):
        p.error("--gate-only gates a weight file alone: leave out --export-only, --average and --gate off")
    if args.no_phantoms and not args.datalist:
        p.error("--no-phantoms needs --datalist: without phantoms the data come only from datalists")
    if args.average is not None and (not args.export_only or len(args.average) < 2):
        p.error("--average takes two or more weights files and needs --export-only")
    if args.from_checkpoint is not None and (not args.export_only or args.average is not None):
        p.error("--from-checkpoint exports one checkpoint's weights: it needs --export-only and no --average")
    if args.average_fractions is not None:
        from monai_tat.errors import UserInputError
        from monai_tat.training import mixing_fractions

        if args.average is None:
            p.error("--average-fractions needs --average")
        try:
            mixing_fractions(len(args.average), args.average_fractions)
        except UserInputError as error:
            p.error(f"--average-fractions: {error}")
    trains = not (args.export_only or args.gate_only)
    if args.anchor is not None and not trains:
        p.error("--anchor is a training option: leave out --export-only and --gate-only")
    if args.anchor is not None and set(args.anchor_tasks) == set(_TASKS):
        p.error("--anchor-tasks must leave at least one task to learn from its references")
    if args.anchor_references and args.anchor is None:
        p.error("--anchor-references needs --anchor (the references' targets are the anchor's restorations)")
    if not 0.0 <= args.anchor_fraction <= 1.0:
        p.error(f"--anchor-fraction must lie in [0, 1], got {args.anchor_fraction}")
    if trains and importlib.util.find_spec("tensorboard") is None:
        # train.json logs to TensorBoard, a training-only extra of monai-tat
        p.error('training logs to TensorBoard, which is not installed: install the training extra '
                '(pip install -e ".[train]" in a checkout, or pip install "monai-tat[train]")')
    rule = _gate_rule(p, args)
    samples = _task_samples(p, args.task_samples) if args.task_samples else args.samples_per_task
    batch = sum(samples.values()) if isinstance(samples, dict) else 3 * samples

    from monai_tat.io import atomic_write

    if args.threads:
        torch.set_num_threads(args.threads)
    quick, model = args.quick, args.model
    size = (QUICK_SIZES if quick else LARGE_SIZES if args.size == "large" else MODEL_SIZES)[model]
    if torch.cuda.is_available():  # TF32 matrix products: float32 training at tensor-core speed
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    patch = args.patch or (16 if quick else 64)
    bundles = Path(args.bundles) if args.bundles else _default_bundles_dir()
    bundle_dir = bundles / BUNDLES[model]
    work = Path(args.work) if args.work else Path(tempfile.gettempdir()) / f"monai_tat_demo_train_{model}"
    work.mkdir(parents=True, exist_ok=True)

    phantoms = None
    if not args.no_phantoms:
        phantoms = write_phantom_datalist(
            work / "phantoms", per_task=args.phantoms or (1 if quick else 16), seed=args.seed,
            size_scale=0.125 if quick else 1.0, slices=3 if quick else 8, testing_per_task=1 if quick else 2,
        )
    datalists = [*([str(phantoms)] if phantoms else []), *(str(Path(d).resolve()) for d in args.datalist)]

    if args.gate_only is not None:
        from monai_tat.inference import load_model

        report = _run_gate(load_model(args.gate_only, "cpu"), args.gate_only, datalists, rule, work)
        if not report.passed:
            raise SystemExit(report.refusal())
        return 0

    plan_path = work / "plan.json"
    plan = json.loads(plan_path.read_text(encoding="utf-8")) if plan_path.is_file() else {}
    if args.export_only:
        # nothing is trained: the record keeps the stopped run's plan, or none for weights from elsewhere
        iterations = int(plan["iterations"]) if "iterations" in plan else None
    else:
        if args.iterations is not None:
            plan["iterations"] = args.iterations
        elif "iterations" not in plan:
            plan["iterations"] = (4 if quick else _iterations_for(args.minutes, model, size, patch, batch, args.lr)
                                  if args.minutes else 2000)
        atomic_write(plan_path, lambda tmp: tmp.write_text(json.dumps(plan) + "\n", encoding="utf-8"), overwrite=True)
        iterations = int(plan["iterations"])

    overrides = training_overrides(
        model, work, datalists, iterations or 1, size, patch=patch, samples_per_task=samples,
        learning_rate=args.lr, seed=args.seed, val_slices=args.val_slices, workers=args.workers,
    )
    if args.init:
        overrides["initialize"] = _initialize_from(Path(args.init), bundle_dir)
    anchored_to = _anchor(overrides, Path(args.anchor), args.anchor_tasks, args.anchor_fraction) if args.anchor else None
    if anchored_to and args.anchor_references:
        references = _reference_inputs(datalists, args.anchor_tasks, work)
        overrides["datalist"] = [*datalists, str(references)]
        anchored_to["references_as_inputs"] = True
    stopped_at = None
    from_checkpoint = _write_checkpoint_ema(work, args.from_checkpoint) if args.from_checkpoint else None
    averaged_from = _write_average(args.average, work, args.average_fractions) if args.average else None
    if args.export_only:
        from monai_tat.training import latest_checkpoint

        if not from_checkpoint and not (work / "models" / "model.pt").is_file():
            raise SystemExit(f"{work / 'models' / 'model.pt'} does not exist: the run has not validated any weights yet")
        last = latest_checkpoint(work / "checkpoints")
        stopped_at = Path(last).stem if last else None
        what = ("the averaged weights" if averaged_from else f"the weight average of {args.from_checkpoint}"
                if from_checkpoint else "the best validated weights")
        _log(f"{model}: exporting {what} of {work} (last checkpoint {stopped_at})")
        wall = 0.0
    else:
        _log(f"{model}: training {iterations} iterations with {bundle_dir / 'configs' / 'train.json'} in {work}")
        start = time.time()
        run_workflow(bundle_dir, "train.json", "train", overrides)
        wall = time.time() - start

    # An average's training settings are its sources' (recorded beside them), not this command's.
    settings = {"patch": patch, "batch": batch, **({"task_samples": samples} if isinstance(samples, dict) else {}),
                "learning_rate": args.lr, "seed": args.seed}
    info = {"iterations": iterations, "stopped_at": stopped_at, "wall_s_this_run": round(wall, 1),
            **({k: None for k in settings} if averaged_from else settings),
            "datalists": [Path(d).name if phantoms and d == str(phantoms) else _portable(d) for d in datalists],
            "simulation": sim.SETTINGS, "network": size,
            "command": "python recipes/demo_weights/train.py " + " ".join(map(_portable, argv or [])),
            **({"averaged_from": averaged_from} if averaged_from else {}),
            **({"anchored_to": anchored_to} if anchored_to else {}),
            **({"exported_from": from_checkpoint} if from_checkpoint else {})}

    # The gate first (held out: the phantoms of another seed and the datalists' testing items):
    # nothing reaches --out (or the bundle) unless every held-out volume gains.
    weights_file = work / "models" / ("from_checkpoint.pt" if from_checkpoint else "model.pt")
    net = _best_network(model, weights_file, size)
    gate_record: dict[str, Any] = {"enforced": False, "skipped": True}
    if args.gate != "off":
        report = _run_gate(net, _portable(str(weights_file.resolve())), datalists, rule, work)
        if not report.passed and args.gate == "enforce":
            raise SystemExit(report.refusal() + f" (nothing written to {args.out})")
        if not report.passed:
            _log(f"held-out gate REFUSED these weights; exporting anyway (--gate report): {report.refusal()}")
        gate_record = {**report.to_json(), "enforced": args.gate == "enforce", "table_markdown": report.to_markdown()}

    # Held out: the phantoms of another seed and the datalists' testing items, with the bundle's evaluate.json.
    evaluation = {"ckpt_path": str(weights_file), "datalist": datalists, "data_key": "testing",
                  "output_dir": str(work / "heldout"), **{f"network_def#{k}": v for k, v in size.items()}}
    run_workflow(bundle_dir, "evaluate.json", "infer", evaluation)
    summary = json.loads((work / "heldout" / "evaluation_summary.json").read_text(encoding="utf-8"))
    for task, s in summary.items():
        _log(f"{model} held-out {task}: input {s['input']['psnr']:.2f} dB / {s['input']['ssim']:.4f} -> restored "
             f"{s['restored']['psnr']:.2f} dB / {s['restored']['ssim']:.4f} ({s['slices']} slices)")

    _export(model, net, Path(args.out), info, None if (args.no_bundles or quick or args.size != "demo") else bundle_dir,
            name=args.size)
    text = json.dumps({**info, "heldout_metrics": summary, "heldout_gate": gate_record}, indent=2) + "\n"
    atomic_write(Path(args.out) / f"{model}_{args.size}_metrics.json", lambda tmp: tmp.write_text(text, encoding="utf-8"),
                 overwrite=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
