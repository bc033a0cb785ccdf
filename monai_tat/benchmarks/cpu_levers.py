"""CPU inference levers, and the seconds a user waits for a whole volume on the CPU.

Two subcommands of ``python -m monai_tat.benchmarks``:

``cpu-levers``: every way tried of running a network faster on the CPU, at one slice size, one
row per lever: seconds of preparation and first call ("compile s", for the compiled levers mostly
compilation), median seconds per slice, and max |output - fp32 eager output| on the same input.
The levers are timed in interleaved rounds (each round runs every lever once, in turn), so a
change in the machine's load falls on all of them alike; the load average (``os.getloadavg``) is
printed beside every row. Levers:

- ``eager``: float32 eager PyTorch, the baseline (its trunk already runs channels-last, the layout
  changed once at the entry).
- ``inductor``: ``torch.compile`` with weight freezing (``freezing=True``, under ``no_grad``).
- ``inductor-cpp``: the same with ``cpp_wrapper=True``.
- ``aoti``: what ``monai-tat restore`` uses on the CPU (:mod:`monai_tat.inference.cpu_speed`):
  exported and compiled ahead of time with frozen weights into a package, compiled into an empty
  cache folder; ``aoti-cached``: the same package loaded from the cache (a second run).
- ``jit-freeze``: ``torch.jit.trace`` + ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``.
- ``jit-onednn``: ``torch.jit.script`` + ``freeze`` with oneDNN Graph fusion
  (``torch.jit.enable_onednn_fusion(True)``).
- ``reference``: with ``--reference MODULE:CALLABLE``, a network built by that callable (e.g. the
  authors' implementation on the ``PYTHONPATH``), loaded with the same weights when its state
  dict matches, timed in the same rounds; the speed-up column divides its time by each lever's.

A lever that fails (an operator an exporter cannot take, no C++ compiler) prints its error in
place of figures.

``cpu-volumes``: seconds to restore a 512x512x300 CT, a 256x256x180 MRI and a 192x192x300 PET with
the shipped TAT and AMIR on this CPU, eagerly, on a first run (compiling) and on a second run (the
compiled package cached). ``--slices N`` slices are timed per case (the first compiled slice,
checked against the eager network, is not counted); the totals are derived, and printed with the
formula: ``eager = S x eager s/slice``, ``first run = compile + S x compiled s/slice``, ``second
run = load + S x compiled s/slice`` for a volume of S slices.

Usage::

    python -m monai_tat.benchmarks cpu-levers --networks paper-tat tat amir --size 512 --rounds 3
    python -m monai_tat.benchmarks cpu-levers --networks tat --size 256 --levers eager aoti aoti-cached
    python -m monai_tat.benchmarks cpu-volumes --slices 3 --json cpu_volumes.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

__all__ = ["LEVERS", "LeverRow", "network_by_name", "lever_rows", "volume_rows", "levers_main", "volumes_main", "VOLUME_CASES"]

LEVERS = ("eager", "inductor", "inductor-cpp", "aoti", "aoti-cached", "jit-freeze", "jit-onednn")

#: (case, H, W, slices): the volumes a user restores.
VOLUME_CASES = (("CT", 512, 512, 300), ("MRI", 256, 256, 180), ("PET", 192, 192, 300))


def _load() -> float:
    return os.getloadavg()[0]


def network_by_name(name: str) -> nn.Module:
    """``paper-tat`` / ``paper-amir`` (random weights, the papers' sizes) or a shipped demo network."""
    from monai_tat.networks import AMIR, TAT

    if name == "paper-tat":
        return TAT().eval()
    if name == "paper-amir":
        return AMIR().eval()
    from monai_tat.inference import load_model

    return load_model(name)


def _build_lever(lever: str, network: nn.Module, x: torch.Tensor, cache_dir: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The callable of ``lever`` for ``network`` on inputs shaped like ``x`` (built under no_grad)."""
    if lever == "eager":
        return network
    if lever in ("inductor", "inductor-cpp"):
        torch._dynamo.reset()
        return torch.compile(network, options={"freezing": True, "cpp_wrapper": lever == "inductor-cpp"})
    if lever in ("aoti", "aoti-cached"):
        from monai_tat.inference.cpu_speed import compile_for_cpu

        runner, _seconds, from_cache = compile_for_cpu(network, x.shape[-2], x.shape[-1], cache_dir)
        if from_cache != (lever == "aoti-cached"):
            raise RuntimeError(f"{lever}: expected {'a cached' if lever == 'aoti-cached' else 'no cached'} package")
        return runner
    if lever == "jit-freeze":
        traced = torch.jit.trace(network, x, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))
    if lever == "jit-onednn":
        torch.jit.enable_onednn_fusion(True)
        return torch.jit.freeze(torch.jit.script(network))
    raise ValueError(f"unknown lever {lever!r}; choose from {', '.join(LEVERS)}")


@dataclass
class LeverRow:
    """One lever on one network at one size."""

    network: str
    size: list[int]
    lever: str
    compile_seconds: Optional[float] = None  # building it and its first calls
    seconds_per_slice: Optional[float] = None  # median over the rounds
    runs: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-minute load average after each run
    max_abs_diff_vs_eager: Optional[float] = None
    speedup_vs_eager: Optional[float] = None
    speedup_vs_reference: Optional[float] = None
    error: Optional[str] = None


def _reference_network(spec: str, network: nn.Module) -> nn.Module:
    """Build ``MODULE:CALLABLE`` and give it ``network``'s weights (in its own key naming when it
    uses the reference's; left as built when neither fits)."""
    module_name, _, attribute = spec.partition(":")
    reference = getattr(importlib.import_module(module_name), attribute or "TAT")().eval()
    from monai_tat.networks.reference import NATIVE_TO_REFERENCE
    import re

    state = network.state_dict()
    for renamed in (state, {_rename(k, NATIVE_TO_REFERENCE, re): v for k, v in state.items()}):
        try:
            reference.load_state_dict(renamed)
            break
        except RuntimeError:
            continue
    return reference


def _rename(key: str, rules: Sequence[tuple[str, str]], re: Any) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def lever_rows(
    name: str, network: nn.Module, height: int, width: int, levers: Sequence[str], rounds: int,
    reference: Optional[str] = None, warmups: int = 1,
) -> list[LeverRow]:
    """Rows of :data:`LEVERS` for ``network`` at ``height x width`` (see the module docstring)."""
    x = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(0))
    names = list(dict.fromkeys(["eager", *levers]))
    if reference:
        names.append("reference")
    rows = {lever: LeverRow(name, [height, width], lever) for lever in names}
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    expected: Optional[torch.Tensor] = None
    with tempfile.TemporaryDirectory(prefix="monai_tat_cpu_levers_") as cache, torch.no_grad(), \
            warnings.catch_warnings():  # fmt: skip
        warnings.simplefilter("ignore")  # tracing and export warn about every frozen size-dependent branch
        try:
            for lever in names:
                row = rows[lever]
                start = time.perf_counter()
                try:
                    runner = _reference_network(reference, network) if lever == "reference" else \
                        _build_lever(lever, network, x, Path(cache))  # fmt: skip
                    # eager: one warm-up; TorchScript optimises at its second call
                    calls = warmups + (2 if lever.startswith("jit") else 0)
                    for _ in range(max(1, calls)):
                        out = runner(x)
                    row.compile_seconds = time.perf_counter() - start
                    if expected is None:
                        expected = out
                    row.max_abs_diff_vs_eager = float((out.float() - expected).abs().max())
                    runners[lever] = runner
                except Exception as err:  # a lever that does not work here is a finding, not a crash
                    row.error = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:160]
                    if os.environ.get("MONAI_TAT_TRACEBACK"):
                        traceback.print_exc()
            for _ in range(rounds):
                for lever, runner in runners.items():
                    start = time.perf_counter()
                    runner(x)
                    rows[lever].runs.append(time.perf_counter() - start)
                    rows[lever].loads.append(_load())
        finally:
            torch.jit.enable_onednn_fusion(False)
    for row in rows.values():
        if row.runs:
            row.seconds_per_slice = statistics.median(row.runs)
    base = rows["eager"].seconds_per_slice
    ref = rows["reference"].seconds_per_slice if "reference" in rows else None
    for row in rows.values():
        if row.seconds_per_slice:
            row.speedup_vs_eager = base / row.seconds_per_slice if base else None
            row.speedup_vs_reference = ref / row.seconds_per_slice if ref else None
    return list(rows.values())


def _print_lever_header() -> None:
    print(f"{'network':<10} {'size':>9} {'lever':<12} {'compile s':>9} {'s/slice':>8} {'x eager':>7} "
          f"{'x ref':>6} {'max|diff|':>9} {'load':>9}", flush=True)  # fmt: skip


def _print_lever_row(row: LeverRow) -> None:
    size = f"{row.size[0]}x{row.size[1]}"
    if row.error:
        print(f"{row.network:<10} {size:>9} {row.lever:<12} failed: {row.error}", flush=True)
        return

    def fmt(value: Optional[float], spec: str) -> str:
        return "-" if value is None else format(value, spec)

    load = f"{min(row.loads):.1f}-{max(row.loads):.1f}" if row.loads else "-"
    print(f"{row.network:<10} {size:>9} {row.lever:<12} {fmt(row.compile_seconds, '9.1f'):>9} "
          f"{fmt(row.seconds_per_slice, '8.3f'):>8} {fmt(row.speedup_vs_eager, '6.2f'):>6}x "
          f"{fmt(row.speedup_vs_reference, '5.2f'):>5}x {fmt(row.max_abs_diff_vs_eager, '9.1e'):>9} {load:>9}",
          flush=True)  # fmt: skip


def _machine(threads: int) -> dict[str, Any]:
    return {"processor": platform.processor() or platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__, "load_at_start": list(os.getloadavg())}  # fmt: skip


def _write_json(path: Optional[str], payload: dict[str, Any]) -> None:
    if path:
        from monai_tat.io.atomic import atomic_write

        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2) + "\n"), overwrite=True)
        print(f"# wrote {path}")


def levers_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks cpu-levers", description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=["paper-tat", "tat", "amir"],
                        help="paper-tat, paper-amir (papers' sizes, random weights), tat, amir (shipped demo weights)")
    parser.add_argument("--size", nargs="+", type=int, default=[512], metavar="N",
                        help="slice size: N (square) or H W (default 512)")
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=LEVERS)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", default=None, metavar="MODULE:CALLABLE",
                        help="also time the network this callable builds (e.g. the authors' TAT), in the same rounds")
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2):
        parser.error("--size takes N or H W")
    height, width = args.size[0], args.size[-1]
    torch.set_num_threads(args.threads)
    machine = _machine(args.threads)
    print(f"# {machine['processor']} ({machine['cpu_capability']}), {machine['cores']} cores, {args.threads} threads, "
          f"torch {torch.__version__}, load at start {machine['load_at_start'][0]:.1f}; {args.rounds} interleaved rounds")
    _print_lever_header()
    rows: list[LeverRow] = []
    for name in args.networks:
        network = network_by_name(name)
        reference = args.reference if name.startswith("paper") else None
        for row in lever_rows(name, network, height, width, args.levers, args.rounds, reference):
            rows.append(row)
            _print_lever_row(row)
    machine["load_at_end"] = list(os.getloadavg())
    _write_json(args.json, {"machine": machine, "rows": [asdict(r) for r in rows]})
    return 0


@dataclass
class VolumeRow:
    """Seconds to restore one volume with one network (network time; the engine adds about 1 %)."""

    network: str
    case: str
    shape: list[int]  # H, W, slices
    slices_timed: int
    eager_seconds_per_slice: float
    compiled_seconds_per_slice: float
    compile_seconds: float  # first run: export + compile + load
    load_seconds: float  # second run: load the cached package
    max_abs_diff: float
    eager_total: float
    first_run_total: float
    second_run_total: float
    loads: list[float] = field(default_factory=list)


def volume_rows(name: str, network: nn.Module, cases: Sequence[tuple[str, int, int, int]], slices: int,
                cache_dir: Optional[Path] = None) -> list[VolumeRow]:
    """:class:`VolumeRow` per case: ``slices`` slices timed eagerly and compiled, interleaved."""
    from monai_tat.inference.cpu_speed import compile_for_cpu

    rows = []
    with tempfile.TemporaryDirectory(prefix="monai_tat_cpu_volumes_") as fresh, torch.no_grad():
        folder = Path(cache_dir) if cache_dir is not None else Path(fresh)
        for case, height, width, total in cases:
            generator = torch.Generator().manual_seed(0)
            xs = [torch.rand(1, 1, height, width, generator=generator) for _ in range(slices + 1)]
            compiled, compile_seconds, from_cache = compile_for_cpu(network, height, width, folder)
            if from_cache:
                raise RuntimeError(f"a compiled package for {name} {height}x{width} is already in {folder}")
            compiled, load_seconds, _from_cache = compile_for_cpu(network, height, width, folder)  # second run
            difference = float((compiled(xs[0]) - network(xs[0])).abs().max())  # the check, not timed
            eager_runs, compiled_runs, loads = [], [], []
            for x in xs[1:]:
                start = time.perf_counter()
                network(x)
                eager_runs.append(time.perf_counter() - start)
                start = time.perf_counter()
                compiled(x)
                compiled_runs.append(time.perf_counter() - start)
                loads.append(_load())
            eager, fast = statistics.median(eager_runs), statistics.median(compiled_runs)
            rows.append(VolumeRow(name, case, [height, width, total], slices, eager, fast, compile_seconds, load_seconds,
                                  difference, total * eager, compile_seconds + total * fast, load_seconds + total * fast,
                                  loads))  # fmt: skip
    return rows


def volumes_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks cpu-volumes",
                                     description="Seconds to restore whole CT / MRI / PET volumes on the CPU, eager and compiled")
    parser.add_argument("--networks", nargs="+", default=["tat", "amir"])
    parser.add_argument("--slices", type=int, default=3, help="slices timed per case (the totals are derived)")
    parser.add_argument("--cases", nargs="+", default=None, metavar="CASE:HxWxS",
                        help="override the cases, e.g. CT:512x512x300 (default CT 512x512x300, MRI 256x256x180, PET 192x192x300)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, metavar="PATH")
    args = parser.parse_args(argv)
    cases = VOLUME_CASES if args.cases is None else tuple(_parse_case(text, parser) for text in args.cases)
    torch.set_num_threads(args.threads)
    machine = _machine(args.threads)
    print(f"# {machine['processor']} ({machine['cpu_capability']}), {machine['cores']} cores, {args.threads} threads, "
          f"torch {torch.__version__}, load at start {machine['load_at_start'][0]:.1f}; {args.slices} slices timed per case")
    print("# totals for S slices: eager = S x eager s/slice; first run = compile + S x compiled s/slice; "
          "second run = load + S x compiled s/slice")
    print(f"{'network':<8} {'case':<4} {'volume':>12} {'eager s/sl':>10} {'comp s/sl':>9} {'compile s':>9} {'load s':>7} "
          f"{'eager tot':>9} {'1st run':>8} {'2nd run':>8} {'max|diff|':>9} {'load':>9}")  # fmt: skip
    rows: list[VolumeRow] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in args.networks:
            network = network_by_name(name)
            for row in volume_rows(name, network, cases, args.slices):
                rows.append(row)
                volume = "x".join(str(v) for v in row.shape)
                print(f"{row.network:<8} {row.case:<4} {volume:>12} {row.eager_seconds_per_slice:10.3f} "
                      f"{row.compiled_seconds_per_slice:9.3f} {row.compile_seconds:9.1f} {row.load_seconds:7.1f} "
                      f"{row.eager_total:9.0f} {row.first_run_total:8.0f} {row.second_run_total:8.0f} "
                      f"{row.max_abs_diff:9.1e} {min(row.loads):4.1f}-{max(row.loads):.1f}", flush=True)  # fmt: skip
    machine["load_at_end"] = list(os.getloadavg())
    _write_json(args.json, {"machine": machine, "rows": [asdict(r) for r in rows]})
    return 0


def _parse_case(text: str, parser: argparse.ArgumentParser) -> tuple[str, int, int, int]:
    try:
        case, _, shape = text.partition(":")
        height, width, slices = (int(v) for v in shape.lower().split("x"))
        return case, height, width, slices
    except ValueError:
        parser.error(f"--cases takes CASE:HxWxS, e.g. CT:512x512x300, got {text!r}")
        raise
