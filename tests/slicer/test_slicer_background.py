"""BackgroundProcess: non-blocking line reading and killing a whole process tree."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import pytest

from MedicalRestoreLib.background import BackgroundProcess


def read_until(process: BackgroundProcess, predicate, timeout_s: float = 30.0) -> list:
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines += [line.text for line in process.read_lines()]
        if predicate(lines):
            return lines
        time.sleep(0.02)
    raise AssertionError(f"timed out; got {lines}")


def is_alive(pid: int) -> bool:
    """True for a running process; a zombie (killed, not yet reaped) counts as dead."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_lines_arrive_in_order_with_stderr_merged():
    code = "import sys; print('one', flush=True); print('two', file=sys.stderr, flush=True); print('three')"
    process = BackgroundProcess([sys.executable, "-c", code])
    assert process.wait(30) == 0
    lines = read_until(process, lambda lines: process.finished())
    assert sorted(lines) == ["one", "three", "two"]
    assert lines.index("one") < lines.index("three")
    assert process.read_lines() == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to see grandchildren")
def test_kill_stops_the_child_and_its_children():
    code = textwrap.dedent(
        """
        import subprocess, sys, time
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print("grandchild", grandchild.pid, flush=True)
        time.sleep(120)
        """
    )
    process = BackgroundProcess([sys.executable, "-c", code])
    lines = read_until(process, lambda lines: any(line.startswith("grandchild") for line in lines))
    grandchild = int(next(line for line in lines if line.startswith("grandchild")).split()[1])
    assert is_alive(process.pid) and is_alive(grandchild)

    process.kill(grace_s=5)

    assert process.returncode is not None
    deadline = time.monotonic() + 10
    while is_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_alive(grandchild)
    process.read_lines()
    assert process.finished()
    process.kill()  # killing an ended process is harmless


def test_output_is_readable_while_the_child_still_runs():
    code = "import time; print('started', flush=True); time.sleep(60)"
    process = BackgroundProcess([sys.executable, "-c", code], env=dict(os.environ))
    try:
        assert read_until(process, lambda lines: "started" in lines) == ["started"]
        assert process.returncode is None and not process.finished()
    finally:
        process.kill()
