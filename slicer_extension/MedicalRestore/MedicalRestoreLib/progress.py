"""Per-slice progress and an estimate of the time remaining."""

from __future__ import annotations

import time
from typing import Callable, Optional, Tuple


class ProgressTracker:
    """Track ``done`` of ``total`` slices and extrapolate the time remaining.

    The rate is measured from the first report on, so model loading and the first batch's
    warm-up do not count as slice time.

    Args:
        clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self.done = 0
        self.total = 0
        self._start: Optional[Tuple[float, int]] = None  # (time, done) of the first report
        self._last_time = 0.0

    def update(self, done: int, total: int, when: Optional[float] = None) -> None:
        """Record that ``done`` of ``total`` slices were restored at time ``when`` (default: now)."""
        when = self._clock() if when is None else when
        if self._start is None or total != self.total or done < self._start[1]:
            self._start = (when, done)
        self.done, self.total = done, total
        self._last_time = when

    @property
    def fraction(self) -> float:
        """Done / total in [0, 1] (0 before the first report)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    @property
    def percent(self) -> int:
        """Progress in whole percent, for a progress bar."""
        return int(round(100 * self.fraction))

    def seconds_remaining(self, now: Optional[float] = None) -> Optional[float]:
        """Estimated seconds left, or ``None`` until at least one slice was timed.

        The rate is measured between the first and the latest report; the time passed since the
        latest report is already spent on the slices that follow.
        """
        if self._start is None:
            return None
        start_time, start_done = self._start
        timed = self.done - start_done
        if timed <= 0:
            return None
        seconds_per_slice = (self._last_time - start_time) / timed
        now = self._clock() if now is None else now
        return max(0.0, seconds_per_slice * (self.total - self.done) - (now - self._last_time))

    def describe(self) -> str:
        """``"12 / 64 slices, about 1 min 5 s left"`` (the estimate once there is one)."""
        if self.total <= 0:
            return "starting"
        text = f"{self.done} / {self.total} slices"
        remaining = self.seconds_remaining()
        if remaining is not None and self.done < self.total:
            text += f", about {format_duration(remaining)} left"
        return text


def format_duration(seconds: float) -> str:
    """``5 s``, ``1 min 5 s``, ``2 h 3 min``: a duration for people, rounded to the second."""
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
