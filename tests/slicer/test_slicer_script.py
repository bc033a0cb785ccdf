"""The background restoration script, run standalone as the module runs it, and its line protocol.

One test runs the script as its own process (slow: it imports torch); the others call its
``main`` in this process, which is the same code without the start-up cost.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

import monai_tat.inference  # noqa: F401 - the script imports it; import once here, not inside the first test
from monai_tat.errors import UserInputError
from monai_tat.tasks import TASKS, get_task

from MedicalRestoreLib import testing
from MedicalRestoreLib.restore_volume_script import (
    CONFIDENCE,
    DONE,
    ERROR,
    PROGRESS,
    SETTING,
    STATUS,
    TASK,
    WINDOW,
    choose_task,
    format_message,
    main,
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


@pytest.fixture
def run_main(capsys):
    """``run_main(*arguments)``: the script's ``main`` in this process; (exit status, messages).

    Runs on one torch thread, as the background processes of the tests do (shared CI cores).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def run(*arguments: str):
        code = main(list(arguments))
        return code, messages(capsys.readouterr().out)

    yield run
    torch.set_num_threads(threads)


@pytest.mark.slow
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
    assert (WINDOW, get_task("ct").display_window) in sent  # the registry's window: -160 to 240 HU
    progress = [payload for kind, payload in sent if kind == PROGRESS]
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert [done for done, _ in progress].count(4) == 1  # the end is reported exactly once
    assert sent[-1] == (DONE, str(output))
    assert kinds.index(TASK) < kinds.index(WINDOW) < kinds.index(PROGRESS)  # known before the first slice

    source, restored = sitk.ReadImage(ct_file), sitk.ReadImage(str(output))
    assert restored.GetSize() == source.GetSize()
    assert np.allclose(restored.GetSpacing(), source.GetSpacing())
    assert np.allclose(restored.GetOrigin(), source.GetOrigin())
    assert np.allclose(restored.GetDirection(), source.GetDirection())
    assert np.isfinite(sitk.GetArrayFromImage(restored)).all()


def test_self_ensemble_option_restores_with_the_ensemble(run_main, tmp_path, ct_file, tiny_checkpoint):
    plain, ensembled = tmp_path / "plain.nrrd", tmp_path / "ensembled.nrrd"
    common = ["--input", ct_file, "--task", "ct", "--model", tiny_checkpoint, "--device", "cpu"]
    assert run_main(*common, "--output", str(plain))[0] == 0
    code, sent = run_main(*common, "--output", str(ensembled), "--self-ensemble")
    assert code == 0 and sent[-1] == (DONE, str(ensembled))
    a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (plain, ensembled))
    assert a.shape == b.shape and np.isfinite(b).all()
    assert np.abs(a - b).max() > 0  # eight orientations averaged: not the plain network's output


def test_confidence_option_writes_the_map_and_names_its_units(run_main, tmp_path, ct_file, tiny_checkpoint):
    output, confidence = tmp_path / "out.nrrd", tmp_path / "confidence.nrrd"
    code, sent = run_main("--input", ct_file, "--output", str(output), "--task", "ct", "--model", tiny_checkpoint,
                          "--device", "cpu", "--confidence", str(confidence))
    assert code == 0, sent
    assert sent[-2:] == [(CONFIDENCE, "HU"), (DONE, str(output))]
    progress = [payload for kind, payload in sent if kind == PROGRESS]
    assert progress[-1] == (32, 32)  # 4 slices, 8 views: one progress over all of them
    source, written = sitk.ReadImage(ct_file), sitk.ReadImage(str(confidence))
    assert written.GetSize() == source.GetSize() and np.allclose(written.GetDirection(), source.GetDirection())
    assert np.allclose(written.GetOrigin(), source.GetOrigin()) and np.allclose(written.GetSpacing(), source.GetSpacing())
    values = sitk.GetArrayFromImage(written)
    assert np.isfinite(values).all() and values.min() >= 0 and values.max() > 0


@pytest.fixture
def pet_file(tmp_path) -> str:
    """A synthetic 32 x 32 x 4 PET in SUV as NRRD."""
    path = str(tmp_path / "pet.nrrd")
    sitk.WriteImage(sitk.GetImageFromArray(testing.synthetic_pet_array((4, 32, 32))), path)
    return path


def test_recorded_modality_chooses_the_task_and_its_window(run_main, tmp_path, pet_file, tiny_checkpoint):
    # Values that fit CT as well as PET (0 to 8): the DICOM modality Slicer recorded decides.
    output = tmp_path / "out.nrrd"
    code, sent = run_main(
        "--input", pet_file, "--output", str(output), "--modality", "PT", "--model", tiny_checkpoint, "--device", "cpu"
    )
    assert code == 0, sent
    assert (TASK, "pet") in sent and (WINDOW, (0.0, 10.0)) in sent
    assert get_task("pet").display_window == (0.0, 10.0)
    assert sent[-1] == (DONE, str(output)) and output.is_file()


def test_a_ct_recorded_as_pet_is_refused_for_its_units_with_the_slicer_fix(run_main, tmp_path, ct_file, tiny_checkpoint):
    # HU values (air -1000, bone 700) under a PET modality: far from SUV, so nothing is restored.
    output = tmp_path / "out.nrrd"
    code, sent = run_main(
        "--input", ct_file, "--output", str(output), "--modality", "PT", "--model", tiny_checkpoint, "--device", "cpu"
    )
    assert code == 2 and not output.exists()
    assert (SETTING, "suv_factor") in sent
    error = dict(sent)[ERROR]
    assert "not in SUV" in error and "load the PET with the DICOM module" in error
    assert not any(kind == PROGRESS for kind, _ in sent)  # refused before the first slice


@pytest.mark.parametrize(
    "change, message, setting",
    [
        ({"--model": "missing.pt"}, "model not found: .*missing.pt", "model"),
        ({"--input": "missing.nrrd"}, "input volume not found", None),
        ({"--batch-size": "0"}, "batch size must be at least 1", "batch_size"),
        ({"--task": "ultrasound"}, "unknown task 'ultrasound'; use one of ct, pet, mri", "task"),
        ({"--task": "mri", "--modality": "CT"}, "DICOM modality is CT, which is the ct task, not mri; choose ct", "task"),
    ],
    ids=["missing model", "missing input", "batch size", "unknown task", "task contradicts modality"],
)
def test_script_user_errors_end_in_one_error_line_and_no_output(
    run_main, tmp_path, ct_file, tiny_checkpoint, change, message, setting
):
    output = tmp_path / "out.nrrd"
    arguments = {"--input": ct_file, "--output": str(output), "--task": "ct", "--model": tiny_checkpoint, "--device": "cpu"}
    arguments.update({key: str(tmp_path / value) if value.endswith(("pt", "nrrd")) else value for key, value in change.items()})
    code, sent = run_main(*[item for pair in arguments.items() for item in pair])

    assert code == 2
    kind, text = sent[-1]
    assert kind == ERROR
    assert re.search(message, text)
    assert "--" not in text  # plain words for a dialog: no command-line flags
    assert [payload for kind, payload in sent if kind == SETTING] == ([setting] if setting else [])
    assert TASK not in [kind for kind, _ in sent]
    assert not output.exists()


def test_script_refuses_to_overwrite(run_main, tmp_path, ct_file, tiny_checkpoint):
    output = tmp_path / "out.nrrd"
    output.write_bytes(b"keep me")
    code, sent = run_main("--input", ct_file, "--output", str(output), "--model", tiny_checkpoint)
    assert code == 2
    assert re.search("output .*out.nrrd exists", sent[-1][1])
    assert output.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "task, modality, expected",
    [
        ("auto", None, "auto"),
        ("Auto", "PT", "pet"),
        (None, "MR", "mri"),
        ("auto", "US", "auto"),  # a modality no task has: the intensities decide
        ("CT", "CT", "ct"),
        ("pet", None, "pet"),
        (" MRI ", "", "mri"),
    ],
)
def test_task_choice_follows_the_registry(task, modality, expected):
    assert choose_task(task, modality) == expected
    assert expected == "auto" or expected in TASKS


@pytest.mark.parametrize(
    "task, modality, message",
    [
        ("mri", "CT", "DICOM modality is CT, which is the ct task, not mri"),
        ("ct", "PT", "DICOM modality is PT, which is the pet task, not ct"),
        ("sparse-view", None, "unknown task 'sparse-view'"),
    ],
)
def test_task_choice_refuses_unknown_or_contradicted_tasks(task, modality, message):
    with pytest.raises(UserInputError, match=message) as raised:
        choose_task(task, modality)
    if modality:
        assert raised.value.setting == "task"  # the panel points at its Task setting


def test_protocol_lines_round_trip():
    assert parse_message(format_message(PROGRESS, 3, 64)) == (PROGRESS, (3, 64))
    assert parse_message(format_message(TASK, "pet")) == (TASK, "pet")
    assert parse_message(format_message(WINDOW, -160.0, 240.0)) == (WINDOW, (-160.0, 240.0))
    assert parse_message(format_message(WINDOW, "auto")) == (WINDOW, None)
    assert parse_message(format_message(SETTING, "batch_size")) == (SETTING, "batch_size")
    assert parse_message(format_message(DONE, "/tmp/a b.nrrd")) == (DONE, "/tmp/a b.nrrd")
    # A message never spans lines, whatever the error text holds.
    assert format_message(ERROR, "first line\nsecond line") == "ERROR first line second line"


def test_free_text_and_malformed_lines_are_not_messages():
    assert parse_message("UserWarning: something from torch") is None
    assert parse_message("") is None
    assert parse_message("PROGRESS three of four") is None
    assert parse_message("WINDOW wide") is None and parse_message("WINDOW 1 2 3") is None
    with pytest.raises(ValueError, match="unknown message kind"):
        format_message("HELLO", "world")
