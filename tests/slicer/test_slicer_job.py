"""RestoreJob: parsing the background process's lines and ending it, with a scripted stand-in process."""

from __future__ import annotations

import pytest

from MedicalRestoreLib import CANCELLED, FAILED, SUCCEEDED, RestoreError, RestoreInputError
from MedicalRestoreLib.background import OutputLine
from MedicalRestoreLib.job import RestoreJob


class ScriptedProcess:
    """Hands out prepared output in chunks, then exits with ``returncode``."""

    def __init__(self, chunks, returncode):
        self.chunks = [[OutputLine(float(i), text) for text in chunk] for i, chunk in enumerate(chunks)]
        self.final_code = returncode
        self.killed = False

    def read_lines(self):
        return self.chunks.pop(0) if self.chunks else []

    @property
    def returncode(self):
        if self.killed:
            return -15
        return self.final_code if not self.chunks else None

    def finished(self):
        return self.killed or not self.chunks

    def kill(self):
        self.killed = True


def make_job(tmp_path, chunks, returncode, **callbacks):
    workdir = tmp_path / "job"
    workdir.mkdir()
    delivered = []

    def deliver(path, task, window):
        delivered.append((path, task, window))
        return "output node"

    job = RestoreJob(ScriptedProcess(chunks, returncode), str(workdir), str(workdir / "out.nrrd"), deliver, **callbacks)
    return job, delivered, workdir


def test_success_delivers_once_after_the_process_ended(tmp_path):
    progress, logs, finished = [], [], []
    job, delivered, workdir = make_job(
        tmp_path,
        [["STATUS reading", "TASK pet", "WINDOW 0 10", "PROGRESS 0 3"], ["some warning", "PROGRESS 3 3", "DONE out.nrrd"]],
        0,
        progress_callback=lambda done, total, left: progress.append((done, total)),
        log_callback=logs.append,
        finished_callback=finished.append,
    )
    assert job.poll() is True and delivered == []  # process still running: nothing delivered yet
    assert job.status == "reading" and job.task == "pet" and job.display_window == (0.0, 10.0)
    assert job.poll() is False  # the last lines, then the end
    assert job.state == SUCCEEDED and job.output_node == "output node"
    assert delivered == [(str(workdir / "out.nrrd"), "pet", (0.0, 10.0))]
    assert progress == [(0, 3), (3, 3)]
    assert "some warning" in logs and "Reading" in logs
    assert finished == [job]
    assert not workdir.exists()
    job.raise_for_state()  # no error to raise
    assert job.poll() is False and len(delivered) == 1


def test_user_error_from_the_script_fails_without_delivery(tmp_path):
    job, delivered, workdir = make_job(tmp_path, [["ERROR checkpoint holds AMIR weights, not TAT"]], 2)
    assert job.wait(timeout_s=5) == FAILED
    assert delivered == []
    assert job.user_error and "checkpoint holds AMIR weights" in job.error
    with pytest.raises(RestoreInputError, match="Restoration failed: checkpoint holds AMIR"):
        job.raise_for_state()
    assert not workdir.exists()


def test_automatic_window_and_no_report_reach_the_delivery_as_none(tmp_path):
    job, delivered, workdir = make_job(tmp_path, [["TASK mri", "WINDOW auto", "DONE out.nrrd"]], 0)
    assert job.wait(timeout_s=5) == SUCCEEDED
    assert delivered == [(str(workdir / "out.nrrd"), "mri", None)]

    # A script that reported no task: the delivery hears of none (the input's look is kept).
    (tmp_path / "second").mkdir()
    job, delivered, workdir = make_job(tmp_path / "second", [["DONE out.nrrd"]], 0)
    assert job.wait(timeout_s=5) == SUCCEEDED
    assert delivered == [(str(workdir / "out.nrrd"), None, None)]
    assert job.task is None and job.display_window is None


def test_confidence_line_records_the_map_units_before_the_delivery(tmp_path):
    seen = []
    job, delivered, workdir = make_job(tmp_path, [["TASK ct", "WINDOW -160 240", "CONFIDENCE HU", "DONE out.nrrd"]], 0)
    job._deliver = lambda path, task, window: seen.append(job.confidence_units) or "output node"
    assert job.wait(timeout_s=5) == SUCCEEDED
    assert seen == ["HU"] and job.confidence_units == "HU"
    assert job.confidence_node is None  # the logic's delivery fills it; a job alone makes no node


@pytest.mark.parametrize(
    "lines, expected",
    [
        (
            ["SETTING model", "ERROR model not found: /x.pt; choose tat, amir, a bundle folder or a checkpoint file"],
            "Restoration failed: model not found: /x.pt; choose tat, amir, a bundle folder or a checkpoint file. "
            "Change the Model setting and restore again.",
        ),
        (
            ["SETTING batch_size", "ERROR batch size must be at least 1, got 0"],
            "Restoration failed: batch size must be at least 1, got 0. Change the Batch size setting and restore again.",
        ),
        (
            ["SETTING overwrite", "ERROR output /tmp/x.nrrd exists; remove it, choose another name or allow overwriting"],
            "Restoration failed: output /tmp/x.nrrd exists; remove it, choose another name or allow overwriting.",
        ),
        (["ERROR unknown task 'us'; use one of ct, pet, mri."], "Restoration failed: unknown task 'us'; use one of ct, pet, mri."),
    ],
    ids=["model", "batch size", "setting the panel lacks", "no setting"],
)
def test_dialog_text_is_the_library_message_and_the_panel_setting(tmp_path, lines, expected):
    job, delivered, _ = make_job(tmp_path, [lines], 2)
    assert job.wait(timeout_s=5) == FAILED and job.user_error
    assert job.error == expected
    assert job.setting == (lines[0].split()[1] if lines[0].startswith("SETTING") else None)
    assert delivered == []


def test_crash_without_error_line_names_the_exit_status(tmp_path):
    job, delivered, _ = make_job(tmp_path, [["Traceback (most recent call last):", "Segmentation fault"]], 139)
    job.wait(timeout_s=5)
    assert job.state == FAILED and not job.user_error
    with pytest.raises(RestoreError, match="exited with status 139"):
        job.raise_for_state()
    assert delivered == []


def test_failed_delivery_fails_the_job(tmp_path):
    workdir = tmp_path / "job"
    workdir.mkdir()

    def deliver(path, task, window):
        raise RestoreError("The restored volume does not lie on the input's voxel grid")

    job = RestoreJob(ScriptedProcess([["DONE x"]], 0), str(workdir), str(workdir / "out.nrrd"), deliver)
    job.wait(timeout_s=5)
    assert job.state == FAILED and "voxel grid" in job.error and job.output_node is None


def test_cancel_from_a_progress_callback_stops_everything(tmp_path):
    jobs = []
    job, delivered, workdir = make_job(
        tmp_path,
        [["PROGRESS 1 8", "PROGRESS 2 8"], ["PROGRESS 8 8", "DONE out.nrrd"]],
        0,
        progress_callback=lambda done, total, left: jobs[0].cancel(),
    )
    jobs.append(job)
    assert job.poll() is False
    assert job.state == CANCELLED and job.process.killed
    assert job.progress.done == 1  # lines after the cancel are not handled
    assert delivered == [] and not workdir.exists()
