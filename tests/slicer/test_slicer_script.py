"""The background restoration script, run standalone as the module runs it, and its line protocol."""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

from MedicalRestoreLib import testing
from MedicalRestoreLib.restore_volume_script import (
    DONE,
    ERROR,
    PROGRESS,
    STATUS,
    TASK,
    format_message,
    parse_message,
)


def messages(stdout: str) -> list:
    parsed = [parse_message(line) for line in stdout.splitlines()]
    return [message for message in parsed if message is not None]


@pytest.fixture
def ct_file(tmp_path) -> str:
    """A synthetic 32 x 32 x 4 CT (int16 HU) as NRRD, with a rotated direction matrix."""
    image = sitk.GetImageFromArray(testing.synthetic_ct_array((4, 32, 32)))
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-12.5, 30.0, 41.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    path = str(tmp_path / "in.nrrd")
    sitk.WriteImage(image, path)
    return path


def test_script_restores_a_file_and_reports_progress(run_script, tmp_path, ct_file, tiny_checkpoint):
    output = tmp_path / "out.nrrd"
    result = run_script(
        "--input", ct_file, "--output", str(output), "--task", "ct", "--model", tiny_checkpoint, "--device", "cpu"
    )

    assert result.returncode == 0, result.stdout + result.stderr
    sent = messages(result.stdout)
    kinds = [kind for kind, _ in sent]
    assert kinds[0] == STATUS and kinds[-1] == DONE
    assert (TASK, "ct") in sent
    progress = [payload for kind, payload in sent if kind == PROGRESS]
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert [done for done, _ in progress].count(4) == 1  # the end is reported exactly once
    assert sent[-1] == (DONE, str(output))
    assert kinds.index(TASK) < kinds.index(PROGRESS)  # the task is known before the first slice

    source, restored = sitk.ReadImage(ct_file), sitk.ReadImage(str(output))
    assert restored.GetSize() == source.GetSize()
    assert np.allclose(restored.GetSpacing(), source.GetSpacing())
    assert np.allclose(restored.GetOrigin(), source.GetOrigin())
    assert np.allclose(restored.GetDirection(), source.GetDirection())
    assert np.isfinite(sitk.GetArrayFromImage(restored)).all()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--model": "missing.pt"}, "model not found: .*missing.pt"),
        ({"--input": "missing.nrrd"}, "input volume not found"),
        ({"--batch-size": "0"}, "batch size must be at least 1"),
    ],
    ids=["missing model", "missing input", "batch size"],
)
def test_script_user_errors_end_in_one_error_line_and_no_output(run_script, tmp_path, ct_file, change, message):
    output = tmp_path / "out.nrrd"
    arguments = {"--input": ct_file, "--output": str(output), "--task": "ct", "--model": "tat", "--device": "cpu"}
    arguments.update({key: str(tmp_path / value) if value.endswith(("pt", "nrrd")) else value for key, value in change.items()})
    result = run_script(*[item for pair in arguments.items() for item in pair])

    assert result.returncode == 2
    kind, text = messages(result.stdout)[-1]
    assert kind == ERROR
    assert re.search(message, text)
    assert not output.exists()


def test_script_refuses_to_overwrite_without_flag(run_script, tmp_path, ct_file):
    output = tmp_path / "out.nrrd"
    output.write_bytes(b"keep me")
    result = run_script("--input", ct_file, "--output", str(output), "--model", "tat")
    assert result.returncode == 2
    assert re.search("output .*out.nrrd exists", messages(result.stdout)[-1][1])
    assert output.read_bytes() == b"keep me"


def test_protocol_lines_round_trip():
    assert parse_message(format_message(PROGRESS, 3, 64)) == (PROGRESS, (3, 64))
    assert parse_message(format_message(TASK, "pet")) == (TASK, "pet")
    assert parse_message(format_message(DONE, "/tmp/a b.nrrd")) == (DONE, "/tmp/a b.nrrd")
    # A message never spans lines, whatever the error text holds.
    assert format_message(ERROR, "first line\nsecond line") == "ERROR first line second line"


def test_free_text_and_malformed_lines_are_not_messages():
    assert parse_message("UserWarning: something from torch") is None
    assert parse_message("") is None
    assert parse_message("PROGRESS three of four") is None
    with pytest.raises(ValueError, match="unknown message kind"):
        format_message("HELLO", "world")
