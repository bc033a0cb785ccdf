"""Per-slice progress and the time-remaining estimate."""

from __future__ import annotations

import pytest

from MedicalRestoreLib import ProgressTracker, format_duration


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_estimate_uses_the_rate_since_the_first_report():
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    assert tracker.seconds_remaining() is None and tracker.describe() == "starting"

    tracker.update(0, 64)  # model loaded at t = 100 s; loading time is not slice time
    assert tracker.seconds_remaining() is None
    clock.now = 116.0
    tracker.update(8, 64)  # 8 slices in 16 s: 2 s per slice, 56 slices to go
    assert tracker.seconds_remaining() == pytest.approx(112.0)
    assert tracker.percent == 12
    assert tracker.describe() == "8 / 64 slices, about 1 min 52 s left"
    clock.now = 126.0  # 10 s later, no new report: the estimate counts down
    assert tracker.seconds_remaining() == pytest.approx(102.0)


def test_report_times_can_come_from_the_reader():
    tracker = ProgressTracker(FakeClock())
    tracker.update(0, 10, when=10.0)
    tracker.update(5, 10, when=15.0)
    assert tracker.seconds_remaining(now=15.0) == pytest.approx(5.0)
    assert tracker.seconds_remaining(now=30.0) == 0.0  # overdue never goes negative


def test_finished_volume_has_no_time_left_and_a_new_volume_restarts():
    clock = FakeClock()
    tracker = ProgressTracker(clock)
    tracker.update(0, 4)
    clock.now += 4
    tracker.update(4, 4)
    assert tracker.fraction == 1.0 and tracker.describe() == "4 / 4 slices"
    tracker.update(0, 10)  # another volume: the rate is measured afresh
    assert tracker.seconds_remaining() is None and tracker.fraction == 0.0


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0 s"), (4.6, "5 s"), (65, "1 min 5 s"), (3600 + 180 + 9, "1 h 3 min"), (-3, "0 s")],
)
def test_durations_read_naturally(seconds, text):
    assert format_duration(seconds) == text
