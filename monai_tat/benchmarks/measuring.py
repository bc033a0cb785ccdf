"""What the benchmarks measure with: peak host memory, repeated durations, a GPU made smaller.

Host memory is measured without tracemalloc (which does not see torch's allocations): the kernel's
peak resident set size (VmHWM) is reset before each measured call (``/proc/self/clear_refs``) and
read after it; where that is not possible, a thread samples the resident set size every
millisecond. The peak is reported above the resident size at entry.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["PeakMemory", "durations", "synchronize", "gpu_memory_limit", "device_text"]


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


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def durations(function: Callable[[], object], repeats: int,
                    clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """``repeats`` durations of ``function()`` on ``clock``."""
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return times


@contextmanager
def gpu_memory_limit(device: torch.device, limit_gb: float | None) -> Iterator[int]:
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


def device_text(device: torch.device) -> str:
    """The device in words: the GPU's name, or the CPU and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine() or 'cpu'}, {torch.get_num_threads()} threads"
