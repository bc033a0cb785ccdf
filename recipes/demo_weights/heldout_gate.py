"""The "no harm" gate: weights that make any held-out volume worse than its input are not shipped.

Every held-out volume (``{"image", "label", "task"}`` items of a datalist's ``testing`` list) is
restored the way a user gets it, :func:`monai_tat.inference.restore_volume` with its defaults (the
task's intensity mapping, MRI k-space consistency when the input is detected as truncated, no
self-ensemble), and scored per slice in the papers' convention (:func:`monai_tat.metrics.score_volumes`):
the input and the restoration each against the reference. Per volume the gate reads

- the **mean PSNR gain** (restored minus input, dB, over the slices whose reference is not constant),
- the **losing fraction**: the share of those slices whose gain is below ``-loss_db`` (0.1 dB).

A volume passes when its mean gain, at the table's precision of 0.01 dB, is above ``min_gain_db``
(0 dB) and its losing fraction is at most ``max_losing_fraction`` (5 %); a task given in
``task_min_gain_db`` passes when the mean gain over all its held-out slices reaches that figure
(compared exactly, shown to 0.001 dB).
The weights pass when every volume and task does.

Example::

    report = run_gate(load_datalist("heldout/datalist.json", key="testing"), network, GateRule())
    write_report(report, Path("work"))          # work/heldout_gate.json and work/heldout_gate.md
    if not report.passed:
        raise SystemExit(report.refusal())
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["GateRule", "VolumeScore", "GateReport", "score_volume", "run_gate", "write_report", "REPORT_NAME"]

#: Base name of the per-volume table the gate writes (``.json`` and ``.md``).
REPORT_NAME = "heldout_gate"


@dataclass(frozen=True)
class GateRule:
    """What a held-out volume (and, optionally, a task) must show for the weights to ship.

    Attributes:
        min_gain_db: each volume's mean PSNR gain over its input must be above this (dB).
        loss_db: a slice "loses" when its gain is below ``-loss_db`` (dB, >= 0).
        max_losing_fraction: each volume's share of losing slices must be at most this (0..1).
        task_min_gain_db: per task, the mean gain over all its held-out slices must reach this (dB).
    """

    min_gain_db: float = 0.0
    loss_db: float = 0.1
    max_losing_fraction: float = 0.05
    task_min_gain_db: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.loss_db >= 0:
            raise ValueError(f"loss_db must be >= 0 dB, got {self.loss_db}")
        if not 0 <= self.max_losing_fraction <= 1:
            raise ValueError(f"max_losing_fraction must be within [0, 1], got {self.max_losing_fraction}")


@dataclass
class VolumeScore:
    """One held-out volume restored with the default path: PSNR / SSIM means (papers' convention),
    the per-slice gain's mean, median and worst (dB), each scored slice's gain in slice order, and
    the verdict with its reasons."""

    volume: str
    task: str
    slices: int
    skipped_slices: int
    input_psnr: float
    restored_psnr: float
    input_ssim: float
    restored_ssim: float
    mean_gain_db: float
    median_gain_db: float
    worst_gain_db: float
    losing_slices: int
    losing_fraction: float
    kspace_consistency: bool
    slice_gains_db: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass
class GateReport:
    """The per-volume scores, per-task summaries and the verdict of one set of weights."""

    rule: GateRule
    volumes: list[VolumeScore]
    tasks: dict[str, dict[str, Any]]
    weights: str

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.volumes) and all(t["passed"] for t in self.tasks.values())

    def refusal(self) -> str:
        """One line naming each failing volume and task with its figures (empty when passed)."""
        parts = [f"{v.volume} ({v.task}): {'; '.join(v.failures)}" for v in self.volumes if v.failures]
        parts += [f"task {task}: {'; '.join(t['failures'])}" for task, t in self.tasks.items() if t["failures"]]
        if not parts:
            return ""
        return f"held-out gate refused {self.weights}: " + " | ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (non-finite figures as null)."""
        rule = {**asdict(self.rule), "task_min_gain_db": dict(self.rule.task_min_gain_db)}
        volumes = [{**_finite(asdict(v)), "passed": v.passed,
                    "slice_gains_db": [round(g, 3) if math.isfinite(g) else None for g in v.slice_gains_db]}
                   for v in self.volumes]
        tasks = {task: _finite(summary) for task, summary in self.tasks.items()}
        return {"weights": self.weights, "passed": self.passed, "rule": rule, "volumes": volumes, "tasks": tasks}

    def to_markdown(self) -> str:
        """The per-volume table (and the per-task rows) as Markdown, for a model card."""
        loss = f"{self.rule.loss_db:g}"
        lines = [
            f"| held-out volume | task | slices | input dB | restored dB | mean gain dB | median gain dB | "
            f"worst slice dB | slices losing > {loss} dB | verdict |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for v in self.volumes:
            lines.append(
                f"| {v.volume} | {v.task.upper()} | {v.slices} | {_db(v.input_psnr)} | {_db(v.restored_psnr)} | "
                f"{_db(v.mean_gain_db, sign=True)} | {_db(v.median_gain_db, sign=True)} | "
                f"{_db(v.worst_gain_db, sign=True)} | {v.losing_slices} ({100 * v.losing_fraction:.1f} %) | "
                f"{'pass' if v.passed else 'refused'} |"
            )
        lines += ["", "| task | volumes | slices | mean gain dB | required dB | verdict |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for task, t in self.tasks.items():
            required = "-" if t["required_gain_db"] is None else f"{t['required_gain_db']:+.2f}"
            gain = t["mean_gain_db"]  # three decimals: the task check is exact, the table must show why it fails
            shown = f"{gain:+.3f}" if gain is not None and math.isfinite(gain) else _db(gain, sign=True)
            lines.append(f"| {task.upper()} | {t['volumes']} | {t['slices']} | {shown} | "
                         f"{required} | {'pass' if t['passed'] else 'refused'} |")
        return "\n".join(lines) + "\n"


def _db(value: float, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a" if value is None or math.isnan(value) else ("+inf" if value > 0 else "-inf")
    return f"{value:+.2f}" if sign else f"{value:.2f}"


def _finite(record: Mapping[str, Any]) -> dict[str, Any]:
    """Floats rounded for a table; NaN / infinite figures become None (JSON has no such numbers)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, float):
            out[key] = round(value, 4) if math.isfinite(value) else None
        else:
            out[key] = value
    return out


def _slice_gains(restored_psnr: np.ndarray, input_psnr: np.ndarray) -> np.ndarray:
    """Per-slice gain in dB; NaN where the reference is constant (PSNR undefined) so it is skipped.

    A slice the input already matched exactly (infinite PSNR) gains 0 dB when the restoration
    matches it too, and -inf when the restoration changed it.
    """
    with np.errstate(invalid="ignore"):
        gains = restored_psnr - input_psnr
    both_exact = np.isinf(restored_psnr) & np.isinf(input_psnr) & (restored_psnr > 0) & (input_psnr > 0)
    return np.where(both_exact, 0.0, gains)


def score_volume(name: str, image: Any, label: Any, task: str, network: nn.Module, rule: GateRule,
                 device: str | torch.device = "cpu") -> VolumeScore:
    """Restore ``image`` with the default restore path and score it against ``label``.

    Args:
        name: how the table names the volume.
        image, label: the low-quality input and its reference, MetaTensors (or paths) in the task's
            physical units, same shape.
        task: "ct", "pet" or "mri".
        network: the network under test (moved to ``device``, eval mode).
        rule: the thresholds the verdict uses.
    """
    from monai_tat.inference import restore_volume
    from monai_tat.io import read_volume
    from monai_tat.metrics import score_volumes

    image = read_volume(image) if isinstance(image, (str, Path)) else image
    label = read_volume(label) if isinstance(label, (str, Path)) else label
    restored = restore_volume(image, network, task=task, device=device)
    record = restored.meta["restoration"]
    axis = record["axis"]
    before = score_volumes(image, label, task, axis, names=(f"{name} (input)", f"{name} (reference)"))
    after = score_volumes(restored, label, task, axis, names=(f"{name} (restored)", f"{name} (reference)"))
    gains = _slice_gains(after["psnr"], before["psnr"])
    valid = ~np.isnan(gains)
    scored = gains[valid]
    losing = int((scored < -rule.loss_db).sum())
    count = int(scored.size)

    def mean(values: np.ndarray) -> float:
        return float(np.mean(values[valid])) if count else math.nan

    score = VolumeScore(
        volume=name, task=task, slices=count, skipped_slices=int((~valid).sum()),
        input_psnr=mean(before["psnr"]), restored_psnr=mean(after["psnr"]),
        input_ssim=mean(before["ssim"]), restored_ssim=mean(after["ssim"]),
        mean_gain_db=float(scored.mean()) if count else math.nan,
        median_gain_db=float(np.median(scored)) if count else math.nan,
        worst_gain_db=float(scored.min()) if count else math.nan,
        losing_slices=losing, losing_fraction=losing / count if count else math.nan,
        kspace_consistency=bool(record.get("kspace_consistency", {}).get("applied", False)),
        slice_gains_db=[float(g) for g in scored],
    )
    score.failures = _volume_failures(score, rule)
    return score


def _volume_failures(score: VolumeScore, rule: GateRule) -> list[str]:
    if score.slices == 0:
        return ["no slice could be scored (every reference slice is constant)"]
    failures = []
    # judged at the table's precision: float round trips give a network that changes nothing ~1e-7 dB
    if not round(score.mean_gain_db, 2) > rule.min_gain_db:
        failures.append(f"mean gain {_db(score.mean_gain_db, sign=True)} dB (needs > {rule.min_gain_db:+.2f})")
    if score.losing_fraction > rule.max_losing_fraction:
        failures.append(f"{score.losing_slices} of {score.slices} slices ({100 * score.losing_fraction:.1f} %) lose "
                        f"more than {rule.loss_db:g} dB (at most {100 * rule.max_losing_fraction:g} % may), "
                        f"worst {_db(score.worst_gain_db, sign=True)} dB")
    return failures


def _task_summaries(volumes: Sequence[VolumeScore], gains: Mapping[str, list[float]], rule: GateRule) -> dict[str, dict[str, Any]]:
    tasks: dict[str, dict[str, Any]] = {}
    for task in sorted({v.task for v in volumes} | set(rule.task_min_gain_db)):
        pooled = np.asarray(gains.get(task, []), dtype=np.float64)
        required = rule.task_min_gain_db.get(task)
        mean_gain = float(pooled.mean()) if pooled.size else math.nan
        failures = []
        if required is not None and not pooled.size:
            failures.append(f"no held-out volume of this task (needs a mean gain >= {required:+.2f} dB)")
        elif required is not None and not mean_gain >= required:
            # exact: a task minimum is a target to reach (0.996 dB is not +1 dB), unlike the volumes' "no harm"
            failures.append(f"mean gain {mean_gain:+.3f} dB over {pooled.size} slices "
                            f"(needs >= {required:+.2f})")
        tasks[task] = {"volumes": sum(v.task == task for v in volumes), "slices": int(pooled.size),
                       "mean_gain_db": mean_gain, "required_gain_db": required,
                       "passed": not failures, "failures": failures}
    return tasks


def run_gate(items: Sequence[Mapping[str, Any]], network: nn.Module, rule: GateRule, *, weights: str = "the weights",
             device: str | torch.device = "cpu", log: Callable[[str], None] | None = None) -> GateReport:
    """Score every held-out item (``{"image", "label", "task"}``, optional ``"case"``) and judge the weights.

    Args:
        items: held-out pairs, e.g. :func:`monai_tat.data.load_datalist` of ``"testing"``.
        network: the network under test.
        rule: the thresholds.
        weights: how the refusal names the weights.
        log: called with one line per scored volume.
    """
    if not items:
        raise ValueError("the held-out gate has no volume to score: give a datalist with 'testing' items")
    volumes: list[VolumeScore] = []
    pooled: dict[str, list[float]] = {}
    for item in items:
        name = item.get("case") or "/".join(Path(item["image"]).parts[-2:])
        score = score_volume(name, item["image"], item["label"], item["task"], network, rule, device)
        volumes.append(score)
        pooled.setdefault(score.task, []).extend(score.slice_gains_db)
        if log is not None:
            log(f"gate {name} ({score.task}): {_db(score.input_psnr)} -> {_db(score.restored_psnr)} dB, mean gain "
                f"{_db(score.mean_gain_db, sign=True)} dB, {score.losing_slices}/{score.slices} slices lose > "
                f"{rule.loss_db:g} dB: {'pass' if score.passed else 'REFUSED'}")
    return GateReport(rule, volumes, _task_summaries(volumes, pooled, rule), weights)


def write_report(report: GateReport, folder: Path) -> tuple[Path, Path]:
    """Write ``folder/heldout_gate.json`` and ``folder/heldout_gate.md`` atomically (replacing older ones)."""
    from monai_tat.io import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_json(), indent=2) + "\n"
    json_path = atomic_write(folder / f"{REPORT_NAME}.json", lambda tmp: tmp.write_text(text, encoding="utf-8"),
                             overwrite=True)
    table = report.to_markdown()
    md_path = atomic_write(folder / f"{REPORT_NAME}.md", lambda tmp: tmp.write_text(table, encoding="utf-8"),
                           overwrite=True)
    return Path(json_path), Path(md_path)
