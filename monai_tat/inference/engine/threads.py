"""Thread counts: the engine's host work on one intra-op thread, the network on the caller's."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

__all__ = ["host_threads", "network_threads"]


#: The caller's intra-op thread count while the engine's own host work runs on one thread.
_caller_threads = threading.local()


@contextlib.contextmanager
def host_threads() -> Iterator[None]:
    """Run the engine's host work (elementwise passes over blocks of slices, transposes) on one
    intra-op thread; :func:`forward` gives the network the caller's thread count back.

    These passes are memory-bound and short: one thread streams them about as fast as several, and
    every multi-threaded op is a fork / join whose cost explodes when other processes hold the cores
    (measured on a busy 2-core machine: 2 threads were 3 to 9 times slower than 1).
    """
    threads = torch.get_num_threads()
    _caller_threads.count = threads
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        _caller_threads.count = None


@contextlib.contextmanager
def network_threads() -> Iterator[None]:
    """The caller's intra-op thread count, inside :func:`host_threads`."""
    threads = getattr(_caller_threads, "count", None)
    if threads is None or threads == torch.get_num_threads():
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(1)
