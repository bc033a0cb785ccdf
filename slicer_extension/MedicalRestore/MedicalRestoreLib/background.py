"""A child process whose output lines can be read without blocking, and killed with its children.

Used by the restoration job: the main thread (Slicer's GUI thread, or a test) calls
:meth:`BackgroundProcess.read_lines` from a timer or loop; a daemon thread does the blocking reads.
Nothing here touches MRML, so it is safe to use from any thread.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

_EOF = object()  # queued once the child's stdout is closed


class OutputLine(NamedTuple):
    """One line the child printed, and when it arrived (``time.monotonic()`` seconds)."""

    time: float
    text: str


class BackgroundProcess:
    """Run ``command`` with stdout and stderr merged into one stream of text lines.

    Args:
        command: the program and its arguments.
        env: environment of the child (default: this process's, unbuffered Python output).
        cwd: working directory of the child.
    """

    def __init__(self, command: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        child_env.setdefault("PYTHONIOENCODING", "utf-8")
        kwargs: dict = {}
        if sys.platform == "win32":
            # A new process group lets taskkill /T reach every child; no console window pops up.
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            # A new session makes the child the leader of a process group we can kill as a whole.
            kwargs["start_new_session"] = True
        self.command = list(command)
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        self._lines: "queue.Queue[object]" = queue.Queue()
        self._output_closed = False
        self._reader = threading.Thread(target=self._read_output, name="MedicalRestore-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """Process id of the child."""
        return self._process.pid

    @property
    def returncode(self) -> Optional[int]:
        """Exit status, or ``None`` while the child runs."""
        return self._process.poll()

    def _read_output(self) -> None:
        stream = self._process.stdout
        try:
            for line in stream:
                self._lines.put(OutputLine(time.monotonic(), line.rstrip("\r\n")))
        except (OSError, ValueError):
            pass  # the pipe was closed under us by kill()
        finally:
            self._lines.put(_EOF)

    def read_lines(self) -> List[OutputLine]:
        """Lines the child printed since the last call, with their arrival times; never blocks."""
        lines: List[OutputLine] = []
        while True:
            try:
                item = self._lines.get_nowait()
            except queue.Empty:
                return lines
            if item is _EOF:
                self._output_closed = True
            else:
                lines.append(item)  # type: ignore[arg-type]

    def finished(self) -> bool:
        """True once the child exited and all its output was handed out by :meth:`read_lines`."""
        return self._output_closed and self._process.poll() is not None

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Wait for the child to exit; its exit status, or ``None`` after ``timeout`` seconds."""
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, grace_s: float = 3.0) -> None:
        """Stop the child and everything it started: a polite request first, then force."""
        if self._process.poll() is None:
            if sys.platform == "win32":
                subprocess.run(
                    ["taskkill", "/F", "/T", "/PID", str(self._process.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
            else:
                self._signal_group(signal.SIGTERM)
                self.wait(grace_s)
                # Force whatever is left of the group, grandchildren included: the group id stays
                # the leader's pid, and Linux does not hand out a pid still in use as a group id.
                self._signal_group(signal.SIGKILL)
            self.wait(grace_s)
        self._reader.join(timeout=grace_s)
        if self._process.stdout is not None:
            self._process.stdout.close()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # already gone
