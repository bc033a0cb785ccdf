"""The engine's own cost: :func:`monai_tat.inference.restore_volume` with a network that does nothing.

Run exactly as the CLI runs it (slicing, the intensity mapping, batching, the inverse and the kept
out-of-range voxels are all counted), with ``x * scale`` as the network on a synthetic volume
(default a CT-like 512 x 512 x 200 in HU), so that what is timed is the engine. Figures: seconds,
ms per slice, the time as a multiple of one plain copy of the volume measured in the same run, the
peak of host memory above the input as a multiple of the volume's size
(:class:`~monai_tat.benchmarks.measuring.PeakMemory`), GPU memory on CUDA, and the largest
difference from what a network that does nothing must give (:func:`identity_restoration`). Prints
a table and writes the figures as JSON (``--json``).

Usage::

    python -m monai_tat.benchmarks engine                                  # 512x512x200, CPU
    python -m monai_tat.benchmarks engine --device cuda --amp none bf16 --size 512 512 600 --gpu-memory-gb 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import MetaTensor
from torch import nn

from monai_tat.benchmarks.measuring import PeakMemory, device_text, durations, gpu_memory_limit, synchronize
from monai_tat.benchmarks.volumes import synthetic_volume

__all__ = ["ScaleNetwork", "identity_restoration", "engine_figures", "engine_main"]


class ScaleNetwork(nn.Module):
    """A network that does nothing: ``x * scale`` with ``scale = 1``; ``(B, 1, H, W)`` in and out.

    ``seconds`` and ``cpu_seconds`` add up the wall and process CPU time spent inside ``forward``
    (on CUDA the launch only; the benchmark reports the engine's time on CPU net of these).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.seconds = 0.0
        self.cpu_seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wall, cpu = time.perf_counter(), time.process_time()
        y = x * self.scale
        self.seconds += time.perf_counter() - wall
        self.cpu_seconds += time.process_time() - cpu
        return y


def identity_restoration(volume: torch.Tensor, task: str, axis: int | None) -> torch.Tensor:
    """What the engine must return for ``volume`` with a network that does nothing, in closed form:
    the task's map to the model range and back (:mod:`monai_tat.transforms.model_mapping`), and
    for fixed-range tasks the voxels outside the range kept as they were."""
    from monai_tat.tasks import get_task
    from monai_tat.transforms.model_mapping import from_model, task_bounds, to_model

    data = volume.float()
    bounds = task_bounds(task, data, axis)
    model = to_model(data, bounds)
    if not get_task(task).fixed_range:
        return from_model(model, bounds)
    inside = (model >= 0.0) & (model <= 1.0)
    return torch.where(inside, from_model(model.clamp(0.0, 1.0), bounds), data)


def engine_figures(
    volume: MetaTensor,
    task: str = "ct",
    device: str | torch.device = "cpu",
    batch_size: int | None = 8,
    amp: str | None = None,
    repeats: int = 3,
    gpu_memory_gb: float | None = None,
    restore: Callable[..., torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Time ``restore_volume`` with :class:`ScaleNetwork` on ``volume``; one row of figures.

    Returns a dict: ``seconds`` (median of ``runs``), ``ms_per_slice``, ``copy_seconds`` (median of
    plain copies of the volume made in the same run: ``numpy.copy``, a fresh array), ``volume_copies``
    (seconds / copy_seconds), ``network_seconds`` (inside the network's ``forward``),
    ``engine_seconds`` (median of ``engine_runs`` = run - network) and ``engine_copies``
    (/ copy_seconds), ``cpu_seconds`` and ``engine_cpu_copies`` (the same on the process's CPU
    clock, steadier on a shared machine), ``peak_extra_bytes`` (largest over the runs) and ``peak_volumes``
    (/ volume bytes), ``memory_method``, ``gpu_peak_bytes`` (CUDA: largest allocation above the
    state before the call), ``max_abs_diff`` and ``max_rel_diff`` (against :func:`identity_restoration`,
    relative to its largest absolute value; with autocast they include the network's rounding). ``restore`` replaces
    :func:`monai_tat.inference.restore_volume` (tests use it to check the comparison).
    """
    from monai_tat.inference import resolve_device, restore_volume
    from monai_tat.inference.engine import choose_slice_axis
    from monai_tat.io import axial_axis

    restore = restore or restore_volume
    dev = resolve_device(device)
    network = ScaleNetwork()
    data = volume.as_tensor()
    n_slices = volume.shape[axial_axis(volume.affine.numpy(), 3)] if volume.ndim == 3 else 1
    as_array = data.numpy()
    row: dict[str, Any] = {"amp": amp or "none", "batch_size": batch_size if batch_size else "auto",
                           "slices": int(n_slices)}

    def run() -> torch.Tensor:
        return restore(volume, network, task, device=dev, batch_size=batch_size, amp=amp)

    run()  # warm-up: CUDA context, kernels, allocator
    copy_runs = durations(lambda: as_array.copy(), repeats + 2)
    copy_cpu = durations(lambda: as_array.copy(), repeats + 2, clock=time.process_time)
    runs, cpu_runs, network_runs, network_cpu_runs, peaks, gpu_peaks = [], [], [], [], [], []
    row["gpu_memory_limit_bytes"] = int(gpu_memory_gb * 2**30) if dev.type == "cuda" and gpu_memory_gb else None
    with gpu_memory_limit(dev, gpu_memory_gb):
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                gpu_base = torch.cuda.memory_allocated(dev)
            network.seconds = network.cpu_seconds = 0.0
            with PeakMemory() as peak:
                start, cpu_start = time.perf_counter(), time.process_time()
                result = run()
                synchronize(dev)
                runs.append(time.perf_counter() - start)
                cpu_runs.append(time.process_time() - cpu_start)
            network_runs.append(network.seconds)
            network_cpu_runs.append(network.cpu_seconds)
            del result
            peaks.append(peak.extra_bytes)
            if dev.type == "cuda":
                gpu_peaks.append(torch.cuda.max_memory_allocated(dev) - gpu_base)
        result = run()
    copy_runs += durations(lambda: as_array.copy(), repeats + 2)
    copy_cpu += durations(lambda: as_array.copy(), repeats + 2, clock=time.process_time)
    reference = identity_restoration(volume.as_tensor(), task, choose_slice_axis(volume, None))
    diff = (result.as_tensor() - reference).abs().max().item()
    scale = reference.abs().max().item() or 1.0
    seconds = statistics.median(runs)
    copy_seconds = statistics.median(copy_runs)
    engine_runs = [total - net for total, net in zip(runs, network_runs)]
    engine_cpu_runs = [total - net for total, net in zip(cpu_runs, network_cpu_runs)]
    row.update(
        seconds=seconds,
        runs=runs,
        ms_per_slice=1000.0 * seconds / n_slices,
        copy_seconds=copy_seconds,
        volume_copies=seconds / copy_seconds,
        network_seconds=statistics.median(network_runs),
        engine_seconds=statistics.median(engine_runs),
        engine_runs=engine_runs,
        engine_copies=statistics.median(engine_runs) / copy_seconds,
        cpu_seconds=statistics.median(cpu_runs),
        copy_cpu_seconds=statistics.median(copy_cpu),
        engine_cpu_copies=statistics.median(engine_cpu_runs) / statistics.median(copy_cpu),
        peak_extra_bytes=None if None in peaks else max(peaks),
        peak_volumes=None if None in peaks else max(peaks) / data.nbytes,
        memory_method=peak.method,
        gpu_peak_bytes=max(gpu_peaks) if gpu_peaks else None,
        max_abs_diff=diff,
        max_rel_diff=diff / scale,
    )
    return row


def _format_row(row: dict[str, Any]) -> str:
    peak = f"{row['peak_volumes']:6.2f}" if row["peak_volumes"] is not None else f"{'-':>6}"
    gpu = f"{row['gpu_peak_bytes'] / 2**30:7.2f}" if row["gpu_peak_bytes"] is not None else f"{'-':>7}"
    return (f"{row['amp']:<5} {str(row['batch_size']):>5} {row['seconds']:9.3f} {row['ms_per_slice']:8.2f} "
            f"{row['volume_copies']:8.1f} {row['engine_copies']:8.1f} {row['engine_cpu_copies']:8.1f} {peak} {gpu} "
            f"{row['max_abs_diff']:10.3g} {row['max_rel_diff']:9.2g}")


def engine_main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_tat.benchmarks engine``: the engine's figures (table + JSON)."""
    from monai_tat.inference import resolve_device

    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks engine",
                                     description="The engine's own cost: restore_volume with a do-nothing network.")
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 200), metavar=("I", "J", "K"))
    parser.add_argument("--task", default="ct", choices=("ct", "pet", "mri"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8, help="slices per batch; 0: the engine's default "
                        "(on CUDA: from free memory)")
    parser.add_argument("--amp", nargs="+", default=["none"], choices=("none", "bf16", "fp16"),
                        help="precisions to run (CUDA only; CPU runs float32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed restorations per row (median reported)")
    parser.add_argument("--gpu-memory-gb", type=float, default=None,
                        help="CUDA: occupy the rest of the GPU so that the engine sees this much memory")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    volume = synthetic_volume(args.task, args.size)
    amps = args.amp if device.type == "cuda" else ["none"]
    print(f"# engine: {args.task} volume {tuple(args.size)} float32 ({volume.as_tensor().nbytes / 2**20:.0f} MiB), "
          f"network x * scale, device {device} ({device_text(device)}), torch {torch.__version__}")
    header = (f"{'amp':<5} {'batch':>5} {'s/volume':>9} {'ms/slice':>8} {'x copy':>8} {'engine':>8} {'eng.cpu':>8} "
              f"{'peak':>6} {'GPU GiB':>7} {'max|diff|':>10} {'relative':>9}")
    rows = []
    for amp in amps:
        row = engine_figures(volume, args.task, device, args.batch_size or None, None if amp == "none" else amp,
                             args.repeats, args.gpu_memory_gb)
        if not rows:
            print(f"# plain copy of the volume (numpy.copy, median): {row['copy_seconds'] * 1000:.1f} ms; x copy = "
                  "restoration / copy; engine = (restoration - time inside the network) / copy; eng.cpu = the same "
                  f"on the process CPU clock; peak = host memory above the input, in volumes ({row['memory_method']}); "
                  "max|diff| against what a network that does nothing must give")
            print(header)
        rows.append(row)
        print(_format_row(row), flush=True)
    if args.json is not None:
        figures = {
            "benchmark": "engine",
            "command": "python -m monai_tat.benchmarks engine " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "device": str(device),
            "device_name": device_text(device),
            "task": args.task,
            "volume_shape": list(args.size),
            "volume_bytes": int(volume.as_tensor().nbytes),
            "network": "x * scale",
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"# figures written to {args.json}")
    return 0
