"""Whole-volume restoration: the engine's own cost, and seconds per volume with TAT and AMIR.

Two benchmarks of :func:`monai_tat.inference.restore_volume`, run exactly as the CLI runs it
(slicing, normalisation, batching, the inverse and the kept out-of-range voxels are all counted):

- ``engine``: a network that does nothing (``x * scale``) on a synthetic CT-like volume (default
  512 x 512 x 200 voxels in HU), so what is timed is the engine. Figures: seconds, ms per slice,
  the time as a multiple of one plain copy of the volume measured in the same run, the peak of
  host memory above the input as a multiple of the volume's size, GPU memory on CUDA, and the
  largest difference from the plain whole-volume path (:func:`plain_restore`). Prints a table and
  writes the figures as JSON (``--json``).
- ``models`` (the default of ``python -m monai_tat.benchmarks.volume_speed``): seconds per volume
  with the paper-size, the demo or tiny TAT / AMIR (random weights: speed does not depend on them).

Host memory is measured without tracemalloc (which does not see torch's allocations): the kernel's
peak resident set size (VmHWM) is reset before each restoration (``/proc/self/clear_refs``) and
read after it; where that is not possible, a thread samples the resident set size every
millisecond. The peak is reported above the resident size just before the call.

Usage::

    python -m monai_tat.benchmarks engine                                  # 512x512x200, CPU
    python -m monai_tat.benchmarks engine --device cuda --amp none bf16 --size 512 512 600 --gpu-memory-gb 8
    python -m monai_tat.benchmarks models --device cuda --amp bf16 --batch-size 8
    python -m monai_tat.benchmarks.volume_speed --size 64 64 2 --tiny       # models, a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from torch import nn

__all__ = [
    "ct_like_volume",
    "synthetic_volume",
    "ScaleNetwork",
    "plain_restore",
    "PeakMemory",
    "engine_figures",
    "build",
    "time_restoration",
    "engine_main",
    "main",
]

TINY = {"TAT": dict(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1),
        "AMIR": dict(dim=6, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)}


def ct_like_volume(shape: Sequence[int], seed: int = 0) -> MetaTensor:
    """An ellipse of soft tissue with a bone ring in air, plus quarter-dose-like noise, in HU.

    Shape ``(I, J, K)``; spacing 0.7 x 0.7 x 2.5 mm; K is the axial axis. Air is at -1000 HU and
    the noise reaches below -1024 HU, so the volume has voxels outside the CT model range.
    """
    rng = np.random.default_rng(seed)
    i, j, k = shape
    xx, yy = np.meshgrid(np.linspace(-1, 1, i), np.linspace(-1, 1, j), indexing="ij")  # (I, J)
    r = (xx / 0.85) ** 2 + (yy / 0.65) ** 2
    plane = np.where(r < 1.0, 40.0, -1000.0) + np.where((r > 0.8) & (r < 0.9), 700.0, 0.0)
    volume = np.empty((i, j, k), dtype=np.float32)
    for z in range(k):  # slice by slice: no float64 copy of the whole volume
        volume[:, :, z] = plane + rng.normal(0.0, 25.0, (i, j))
    affine = torch.diag(torch.tensor([0.7, 0.7, 2.5, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(volume), affine=affine, meta={"modality": "CT"})


def synthetic_volume(task: str, shape: Sequence[int], seed: int = 0) -> MetaTensor:
    """A volume for ``task`` in its units: the CT-like volume in HU, or derived from it as PET-like
    SUV (air 0, tissue about 10, bone ring above 20 SUV) or MRI-like signal (percentile scaling)."""
    volume = ct_like_volume(shape, seed)
    if task == "ct":
        return volume
    data = volume.as_tensor()
    if task == "pet":
        data.add_(1000.0).div_(100.0).clamp_(min=0.0)
        modality = "PT"
    elif task == "mri":
        data.add_(1000.0).clamp_(min=0.0).round_()
        modality = "MR"
    else:
        raise ValueError(f"unknown task {task!r}")
    volume.meta["modality"] = modality
    return volume


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


def plain_restore(
    image: Any,
    network: nn.Module,
    task: str,
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    axis: int | None = None,
    amp: str | None = None,
) -> torch.Tensor:
    """The plain whole-volume path that the engine's fast paths must reproduce; float32 tensor.

    This is the straightforward whole-volume algorithm, kept as the reference for the
    benchmark's and the tests' comparisons: the whole volume goes through
    :func:`monai_tat.transforms.model_intensity_transform` (a MetaTensor), is clipped to [0, 1] for
    fixed-range tasks, cut into contiguous ``(N, H, W)`` slices, run through ``network`` in batches,
    reassembled, inverted with the transform's ``inverse`` and, for fixed-range tasks, the voxels
    outside the model range take their input values. Memory: several copies of the volume.
    """
    from monai_tat.inference.devices import autocast, resolve_amp, resolve_device
    from monai_tat.inference.engine import choose_slice_axis, slices_to_volume, volume_to_slices
    from monai_tat.inference.tasks import resolve_task
    from monai_tat.io import as_meta_tensor
    from monai_tat.tasks import get_task
    from monai_tat.transforms import model_intensity_transform

    volume = as_meta_tensor(image[0], affine=image[1]) if isinstance(image, tuple) else as_meta_tensor(image)
    volume = volume if volume.dtype == torch.float32 else volume.float()
    task = resolve_task(task, volume)
    dev = resolve_device(device)
    amp_dtype = resolve_amp(amp, dev)
    slice_axis = choose_slice_axis(volume, axis)
    transform = model_intensity_transform(task)
    normalised = transform(volume)
    model_input = normalised.as_tensor().float()
    keep_input = None
    if get_task(task).fixed_range:
        keep_input = (model_input < 0.0) | (model_input > 1.0)
        model_input = model_input.clamp(0.0, 1.0)
    slices = volume_to_slices(model_input, slice_axis)
    restored_slices = torch.empty_like(slices)
    was_training = network.training
    network.to(dev).eval()
    try:
        with torch.inference_mode(), autocast(dev, amp_dtype):
            for start in range(0, slices.shape[0], batch_size):
                batch = slices[start : start + batch_size][:, None].to(dev)
                restored_slices[start : start + batch_size] = network(batch).float()[:, 0].cpu()
    finally:
        network.train(was_training)
    restored_model = slices_to_volume(restored_slices, slice_axis, model_input.shape)
    as_normalised = MetaTensor(
        restored_model.to(normalised.dtype), meta=dict(normalised.meta),
        applied_operations=list(normalised.applied_operations),
    )
    restored = transform.inverse(as_normalised).as_tensor().float()
    if keep_input is not None:
        restored = torch.where(keep_input, volume.as_tensor().float(), restored)
    return restored


def _read_proc_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak resident set size of this process (Linux >= 4.0); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _read_proc_kib("VmHWM") is not None


def _release_free_heap() -> bool:
    """Give the C allocator's free heap memory back to the system (glibc ``malloc_trim``), so that
    memory reused from earlier runs shows in the next run's peak RSS; False where unavailable."""
    try:
        import ctypes

        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0)) or True
    except (OSError, AttributeError):
        return False


class PeakMemory:
    """Peak host memory (resident set size) of this process above its size at entry, in bytes.

    ``with PeakMemory() as peak: ...`` then ``peak.extra_bytes`` (None where neither method works)
    and ``peak.method``. At entry the C allocator's free heap is given back to the system (glibc
    ``malloc_trim``): memory kept from earlier work would otherwise be reused unseen. Method one:
    reset the kernel's peak RSS (VmHWM) at entry and read it at exit (exact, no overhead). Method
    two: a thread sampling ``/proc/self/statm`` every millisecond (may miss a shorter peak).
    """

    def __init__(self) -> None:
        self.extra_bytes: int | None = None
        self.method = "none"
        self._start_kib = 0
        self._samples_peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss_kib() -> int | None:
        try:
            with open("/proc/self/statm") as statm:
                pages = int(statm.read().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        import resource

        return pages * resource.getpagesize() // 1024

    def __enter__(self) -> PeakMemory:
        trimmed = _release_free_heap()
        rss = self._rss_kib()
        if rss is None:
            return self
        self._start_kib = rss
        if _reset_peak_rss():
            self.method = "peak RSS (VmHWM reset through /proc/self/clear_refs" + (
                ", malloc_trim first)" if trimmed else ")")
        else:
            self.method = "RSS sampled every 1 ms (/proc/self/statm)"
            self._samples_peak = rss
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            rss = self._rss_kib()
            if rss is not None:
                self._samples_peak = max(self._samples_peak, rss)

    def __exit__(self, *exc: object) -> None:
        if self.method.startswith("peak RSS"):
            peak = _read_proc_kib("VmHWM")
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._samples_peak, self._rss_kib() or 0)
        else:
            return
        self.extra_bytes = max(0, (peak or 0) - self._start_kib) * 1024


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _durations(function: Callable[[], object], repeats: int,
                    clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """``repeats`` durations of ``function()`` on ``clock``."""
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return times


@contextmanager
def _gpu_memory_limit(device: torch.device, limit_gb: float | None) -> Iterator[int]:
    """Occupy the GPU's free memory beyond ``limit_gb`` so that the engine sees a GPU of that size;
    yields the bytes held (0 when no limit or not CUDA)."""
    if device.type != "cuda" or not limit_gb:
        yield 0
        return
    free, _total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_allocated(device)
    hold = max(0, int(free - (limit_gb * 2**30 - allocated)))
    filler = torch.empty(hold, dtype=torch.uint8, device=device) if hold else None
    try:
        yield hold
    finally:
        del filler
        torch.cuda.empty_cache()


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
    state before the call), ``max_abs_diff`` and ``max_rel_diff`` (against :func:`plain_restore`
    on the same device, relative to the largest absolute output value). ``restore`` replaces
    :func:`monai_tat.inference.restore_volume` (tests use it to check the comparison).
    """
    from monai_tat.inference import resolve_device, restore_volume
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
    copy_runs = _durations(lambda: as_array.copy(), repeats + 2)
    copy_cpu = _durations(lambda: as_array.copy(), repeats + 2, clock=time.process_time)
    runs, cpu_runs, network_runs, network_cpu_runs, peaks, gpu_peaks = [], [], [], [], [], []
    row["gpu_memory_limit_bytes"] = int(gpu_memory_gb * 2**30) if dev.type == "cuda" and gpu_memory_gb else None
    with _gpu_memory_limit(dev, gpu_memory_gb):
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
                torch.cuda.reset_peak_memory_stats(dev)
                gpu_base = torch.cuda.memory_allocated(dev)
            network.seconds = network.cpu_seconds = 0.0
            with PeakMemory() as peak:
                start, cpu_start = time.perf_counter(), time.process_time()
                result = run()
                _synchronize(dev)
                runs.append(time.perf_counter() - start)
                cpu_runs.append(time.process_time() - cpu_start)
            network_runs.append(network.seconds)
            network_cpu_runs.append(network.cpu_seconds)
            del result
            peaks.append(peak.extra_bytes)
            if dev.type == "cuda":
                gpu_peaks.append(torch.cuda.max_memory_allocated(dev) - gpu_base)
        result = run()
    copy_runs += _durations(lambda: as_array.copy(), repeats + 2)
    copy_cpu += _durations(lambda: as_array.copy(), repeats + 2, clock=time.process_time)
    reference = plain_restore(volume, network, task, device=dev, batch_size=batch_size or 8, amp=amp)
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


def _device_text(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine() or 'cpu'}, {torch.get_num_threads()} threads"


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
          f"network x * scale, device {device} ({_device_text(device)}), torch {torch.__version__}")
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
                  "max|diff| against the plain whole-volume path")
            print(header)
        rows.append(row)
        print(_format_row(row), flush=True)
    if args.json is not None:
        figures = {
            "benchmark": "engine",
            "command": "python -m monai_tat.benchmarks engine " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "device": str(device),
            "device_name": _device_text(device),
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


def build(name: str, tiny: bool = False, demo: bool = False) -> nn.Module:
    """The paper-size network ``name`` (TAT or AMIR), the shipped demo model, or a tiny one for smoke
    runs, in eval mode."""
    if demo:
        from monai_tat.inference import load_model

        return load_model(name.lower())
    from monai_tat.networks import build_network

    return build_network(name, **(TINY[name] if tiny else {})).eval()


def time_restoration(volume: MetaTensor, network: nn.Module, device: torch.device, batch_size: int | None,
                     amp: str | None, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` full restorations, after one warm-up restoration of two slices."""
    from monai_tat.inference import restore_volume

    restore_volume(volume[..., :2], network, "ct", device=device, batch_size=batch_size, amp=amp)
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        restore_volume(volume, network, "ct", device=device, batch_size=batch_size, amp=amp)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monai_tat.benchmarks models`` (and ``python -m monai_tat.benchmarks.volume_speed``):
    seconds per volume with TAT and AMIR."""
    from monai_tat.inference import resolve_device

    parser = argparse.ArgumentParser(prog="python -m monai_tat.benchmarks models",
                                     description="Seconds per volume of whole-volume restoration with TAT and AMIR.")
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 64), metavar=("I", "J", "K"))
    parser.add_argument("--models", nargs="+", default=("TAT", "AMIR"), choices=("TAT", "AMIR"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the engine's (on CUDA: from free memory)")
    parser.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="tiny networks (smoke test of the script)")
    parser.add_argument("--demo", action="store_true", help="the shipped demo models instead of the paper sizes")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    volume = ct_like_volume(args.size)
    batch = args.batch_size if args.batch_size else "auto"
    print(f"volume {tuple(args.size)} (axial K={args.size[2]} slices), device {device} ({_device_text(device)}), "
          f"batch {batch}, amp {args.amp}, torch {torch.__version__}")
    for name in args.models:
        network = build(name, tiny=args.tiny, demo=args.demo)
        times = time_restoration(volume, network, device, args.batch_size, args.amp, args.repeats)
        best = min(times)
        label = "(tiny)" if args.tiny else "(demo)" if args.demo else "(paper)"
        print(f"{name:5s} {label:7s} {best:10.2f} s/volume  {args.size[2] / best:8.2f} slices/s"
              f"  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
