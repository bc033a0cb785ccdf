"""One running restoration: a background process, its parsed progress, and what happens at the end.

The job is driven by :meth:`RestoreJob.poll`, called from the thread that owns the MRML scene
(Slicer's QTimer, or a loop in :meth:`RestoreJob.wait`); the result is delivered on that thread
only, and only once the background process finished successfully. Cancelling or failing delivers
nothing, so no half-written output node can appear.
"""

from __future__ import annotations

import shutil
import time
from typing import Callable, List, Optional, Tuple

from MedicalRestoreLib.background import BackgroundProcess
from MedicalRestoreLib.errors import RestoreCancelled, RestoreError, RestoreInputError
from MedicalRestoreLib.parameters import SETTING_LABELS
from MedicalRestoreLib.progress import ProgressTracker
from MedicalRestoreLib.restore_volume_script import (
    CONFIDENCE,
    DONE,
    ERROR,
    EXIT_USER_ERROR,
    PROGRESS,
    SETTING,
    STATUS,
    TASK,
    WINDOW,
    parse_message,
)

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

ProgressCallback = Callable[[int, int, Optional[float]], None]  # (done, total, seconds left)
LogCallback = Callable[[str], None]
DisplayWindow = Optional[Tuple[float, float]]  # (low, high) in the task's units; None: automatic
Deliver = Callable[[str, Optional[str], DisplayWindow], object]  # (result path, task, window) -> node


class RestoreJob:
    """A restoration in progress.

    Args:
        process: the background process running the restoration script.
        workdir: temporary folder of the job's files, removed when the job ends.
        output_path: where the script writes the restored volume.
        deliver: called once with ``(output_path, task, display_window)`` after a successful run,
            with the task and window the script reported (``None`` when it reported none);
            returns the output node it filled.
        progress_callback, log_callback: see :data:`ProgressCallback`, :data:`LogCallback`.
        finished_callback: called with the job once it ended, whatever the outcome.
    """

    def __init__(
        self,
        process: BackgroundProcess,
        workdir: str,
        output_path: str,
        deliver: Deliver,
        progress_callback: Optional[ProgressCallback] = None,
        log_callback: Optional[LogCallback] = None,
        finished_callback: Optional[Callable[["RestoreJob"], None]] = None,
    ):
        self.process = process
        self.workdir = workdir
        self.output_path = output_path
        self.task: Optional[str] = None  # the registry task the script resolved (TASK line)
        self.display_window: DisplayWindow = None  # that task's display window (WINDOW line)
        self.state = RUNNING
        self.error: Optional[str] = None
        self.user_error = False  # True when the error is the user's to fix (bad checkpoint, ...)
        self.setting: Optional[str] = None  # the setting that fixes the error, as the library names it
        self.output_node = None
        self.confidence_units: Optional[str] = None  # units of the confidence map, when one was written
        self.confidence_node = None  # the confidence map's volume node, when one was asked for
        self.status = "starting"
        self.log: List[str] = []
        self.progress = ProgressTracker()
        self._deliver = deliver
        self._progress_callback = progress_callback
        self._log_callback = log_callback
        self._finished_callback = finished_callback
        self._script_error: Optional[str] = None
        self.started = time.monotonic()

    @property
    def running(self) -> bool:
        """True until the job succeeded, failed or was cancelled."""
        return self.state == RUNNING

    @property
    def elapsed_s(self) -> float:
        """Seconds since the job started."""
        return time.monotonic() - self.started

    def poll(self) -> bool:
        """Handle the process's new output, and its end when it ended; True while still running."""
        if not self.running:
            return False
        for line in self.process.read_lines():
            self._handle_line(line.text, line.time)
            if not self.running:  # a callback cancelled the job
                return False
        if self.process.finished():
            self._finish()
        return self.running

    def wait(self, timeout_s: Optional[float] = None, interval_s: float = 0.05) -> str:
        """Poll until the job ends (or ``timeout_s`` passed); returns the state."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.poll():
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(interval_s)
        return self.state

    def cancel(self) -> None:
        """Kill the background process and its children; nothing is delivered to the scene."""
        if not self.running:
            return
        self.process.kill()
        self.state = CANCELLED
        self.error = "Restoration cancelled."
        self.add_log("Cancelled: the background process was stopped; no output volume was created.")
        self._end()

    def raise_for_state(self) -> None:
        """Raise the error that ended the job, if any (for blocking callers)."""
        if self.state == CANCELLED:
            raise RestoreCancelled(self.error)
        if self.state == FAILED:
            raise (RestoreInputError if self.user_error else RestoreError)(self.error)

    def _handle_line(self, line: str, when: float) -> None:
        message = parse_message(line)
        if message is None:
            if line.strip():
                self.add_log(line)
            return
        kind, payload = message
        if kind == PROGRESS:
            done, total = payload  # type: ignore[misc]
            self.progress.update(done, total, when)
            if self._progress_callback is not None:
                self._progress_callback(done, total, self.progress.seconds_remaining())
        elif kind == STATUS:
            self.status = str(payload)
            self.add_log(self.status[:1].upper() + self.status[1:])
        elif kind == TASK:
            self.task = str(payload) or None
        elif kind == WINDOW:
            self.display_window = payload  # type: ignore[assignment]
        elif kind == SETTING:
            self.setting = str(payload) or None
        elif kind == CONFIDENCE:
            self.confidence_units = str(payload) or None
        elif kind == ERROR:
            self._script_error = str(payload)
            self.add_log(f"Error: {payload}")
        elif kind == DONE:
            self.add_log(f"Restored volume written by the background process ({self.progress.total} slices).")

    def _finish(self) -> None:
        code = self.process.returncode
        if code == 0:
            try:
                self.output_node = self._deliver(self.output_path, self.task, self.display_window)
            except Exception as error:  # noqa: BLE001 - any failure must end the job, not leave it running
                self._fail(str(error), user_error=isinstance(error, RestoreInputError))
            else:
                self.state = SUCCEEDED
                self.add_log(f"Done in {self.elapsed_s:.1f} s.")
        else:
            reason = self._script_error or f"the background process exited with status {code}; see the log"
            self._fail(reason, user_error=code == EXIT_USER_ERROR)
        self._end()

    def _fail(self, reason: str, user_error: bool) -> None:
        """End in failure with a message for a dialog: the library's words, then where to fix it."""
        self.state = FAILED
        self.error = f"Restoration failed: {reason.strip().rstrip('.')}."
        label = SETTING_LABELS.get(self.setting or "")
        if label:
            self.error += f" Change the {label} setting and restore again."
        self.user_error = user_error

    def _end(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self._finished_callback is not None:
            self._finished_callback(self)

    def add_log(self, text: str) -> None:
        """Append a line to the job's log and pass it to the log callback."""
        self.log.append(text)
        if self._log_callback is not None:
            self._log_callback(text)
