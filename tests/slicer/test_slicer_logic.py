"""The module logic against real MRML objects (slicer-core): restore, cancel, clear errors.

Tests marked slow run the background script end to end (a PythonSlicer-like child process that
imports torch), as the module does.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import slicer
import vtk

from MedicalRestoreLib import (
    CANCELLED,
    SUCCEEDED,
    RestoreCancelled,
    RestoreInputError,
    testing,
    volumes,
)
from MedicalRestoreLib.logic import normalize_device
from MedicalRestoreLib.parameters import AMP_CHOICES, DEVICE_CHOICES
from MedicalRestoreLib.restore_volume_script import AUTO


def volume_nodes(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLVolumeNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"))]


@pytest.mark.slow
def test_restore_into_new_node_keeps_geometry_and_input(
    scene, ct_node, logic, tiny_checkpoint, private_tempdir, state_of, same_state
):
    before = state_of(ct_node)
    job = logic.process(ct_node, None, "CT", tiny_checkpoint, "cpu", wait=True)

    assert job.state == SUCCEEDED
    output = job.output_node
    assert output.GetName() == "SyntheticCT restored"
    assert output.GetScene() is scene
    assert [node.GetName() for node in volume_nodes(scene)] == ["SyntheticCT", "SyntheticCT restored"]
    # Identical grid: dimensions, spacing, origin and IJK-to-RAS directions, bit for bit.
    assert output.GetImageData().GetDimensions() == ct_node.GetImageData().GetDimensions() == (32, 32, 4)
    assert output.GetSpacing() == ct_node.GetSpacing()
    assert output.GetOrigin() == ct_node.GetOrigin()
    directions_in, directions_out = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    ct_node.GetIJKToRASDirectionMatrix(directions_in)
    output.GetIJKToRASDirectionMatrix(directions_out)
    assert all(
        directions_in.GetElement(r, c) == directions_out.GetElement(r, c) for r in range(3) for c in range(3)
    )
    restored = slicer.util.arrayFromVolume(output)
    assert restored.shape == before["voxels"].shape and restored.dtype == np.float32
    assert np.isfinite(restored).all()
    # The input node is only read.
    same_state(before, state_of(ct_node))
    # CT display: the abdomen window in HU.
    display = output.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (400.0, 40.0)
    assert job.task == "ct"
    assert list(private_tempdir.iterdir()) == []  # temporary files removed


@pytest.mark.slow
def test_non_blocking_restore_of_the_parameter_node_with_the_recorded_modality(scene, logic, tiny_checkpoint):
    from monai_tat.tasks import get_task

    colours = slicer.vtkMRMLColorLogic()
    colours.SetMRMLScene(scene)  # Slicer's colour tables, as in the application (while the logic lives)
    # Values that fit CT as well as PET (0 to 8 SUV): the DICOM modality Slicer recorded decides the task.
    pet_node = testing.add_volume(scene, "SyntheticPET", testing.synthetic_pet_array((4, 32, 32)))
    pet_node.SetAttribute("DICOM.Modality", "PT")
    target = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my output")
    progress, finished = [], []
    parameters = logic.parameters(scene)  # what the module panel shows
    parameters.input_volume = pet_node
    parameters.output_volume = target
    parameters.task = "Auto"
    parameters.model = "file"
    parameters.model_path = tiny_checkpoint
    parameters.batch_size = 3

    job = logic.process_parameters(
        parameters,
        wait=False,
        progress_callback=lambda done, total, left: progress.append((done, total)),
        finished_callback=finished.append,
    )
    # Nothing is delivered before the caller polls: the output stays untouched meanwhile.
    assert job.running and target.GetImageData() is None

    assert job.wait(timeout_s=120) == SUCCEEDED
    assert job.output_node is target and target.GetName() == "my output"
    assert finished == [job]
    assert progress[0] == (0, 4) and progress[-1] == (4, 4)
    assert [total for _, total in progress] == [4] * len(progress)
    assert all(a[0] <= b[0] for a, b in zip(progress, progress[1:]))
    assert job.task == "pet" and job.display_window == get_task("pet").display_window
    assert np.array_equal(volumes.ijk_to_ras(target), volumes.ijk_to_ras(pet_node))
    assert len(volume_nodes(scene)) == 2
    # PET display: the registry's SUV window and Slicer's inverted grey.
    display = target.GetDisplayNode()
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == get_task("pet").display_window
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeInvertedGrey"
    assert colours.GetMRMLScene() is scene


@pytest.mark.parametrize("when", ["at once", pytest.param("at the first progress report", marks=pytest.mark.slow)])
def test_cancel_leaves_no_output_node(scene, logic, tiny_checkpoint, private_tempdir, state_of, same_state, when):
    # Enough slices (batch size 1) that the process is still working when the first report arrives.
    node = testing.add_synthetic_ct(scene, shape_kji=(24, 48, 48))
    before = state_of(node)
    jobs = []

    def cancel_on_first_report(done, total, seconds_left):
        jobs[0].cancel()

    job = logic.process(
        node,
        None,
        "ct",
        tiny_checkpoint,
        "cpu",
        wait=False,
        batch_size=1,
        progress_callback=cancel_on_first_report if when != "at once" else None,
    )
    jobs.append(job)
    if when == "at once":
        job.cancel()
    state = job.wait(timeout_s=120)

    assert state == CANCELLED
    assert job.output_node is None
    assert [n.GetName() for n in volume_nodes(scene)] == ["SyntheticCT"]
    assert job.process.returncode is not None  # the background process is gone
    assert list(private_tempdir.iterdir()) == []
    with pytest.raises(RestoreCancelled):
        job.raise_for_state()
    same_state(before, state_of(node))
    job.cancel()  # cancelling twice is harmless
    assert job.state == CANCELLED


@pytest.mark.slow
def test_checkpoint_of_another_network_fails_cleanly(scene, ct_node, logic, tmp_path, private_tempdir):
    import torch

    wrong = tmp_path / "not_a_restoration_network.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, wrong)

    with pytest.raises(RestoreInputError, match="Restoration failed") as raised:
        logic.process(ct_node, None, "ct", str(wrong), "cpu", wait=True)
    assert "--" not in str(raised.value)  # the dialog's text names no command-line flag
    assert [n.GetName() for n in volume_nodes(scene)] == ["SyntheticCT"]
    assert list(private_tempdir.iterdir()) == []


@pytest.mark.slow
def test_task_the_modality_contradicts_is_refused_by_the_registry(scene, ct_node, logic, tiny_checkpoint, private_tempdir):
    ct_node.SetAttribute("DICOM.Modality", "CT")
    jobs = []
    with pytest.raises(RestoreInputError) as raised:
        logic.process(ct_node, None, "MRI", tiny_checkpoint, "cpu", wait=True, finished_callback=jobs.append)
    # The dialog's text: the library's words, then the panel setting that fixes it.
    assert str(raised.value) == (
        "Restoration failed: this volume's DICOM modality is CT, which is the ct task, not mri; choose ct or "
        "automatic. Change the Task setting and restore again."
    )
    assert jobs[0].setting == "task" and jobs[0].task is None  # refused before any slice
    assert [n.GetName() for n in volume_nodes(scene)] == ["SyntheticCT"]
    assert list(private_tempdir.iterdir()) == []


@pytest.mark.parametrize(
    "modality, task, expected_task",
    [("PT", "MRI", "mri"), (None, "Auto", AUTO), ("MR", None, AUTO)],
)
def test_the_script_gets_the_recorded_modality_and_the_task_name(ct_node, logic, tiny_checkpoint, modality, task, expected_task):
    if modality:
        ct_node.SetAttribute("DICOM.Modality", modality)
    job = logic.process(ct_node, None, task, tiny_checkpoint, "cpu", wait=False)
    job.cancel()  # only the command line matters here
    command = job.process.command
    assert command[command.index("--task") + 1] == expected_task  # lower-cased only; the script checks it
    if modality:
        assert command[command.index("--modality") + 1] == modality  # passed on as recorded
    else:
        assert "--modality" not in command
    assert "--self-ensemble" not in command
    assert job.state == CANCELLED and job.output_node is None


def test_self_ensemble_choice_reaches_the_script(ct_node, logic, tiny_checkpoint):
    parameters = logic.parameters(ct_node.GetScene())
    parameters.input_volume = ct_node
    parameters.model, parameters.model_path = "file", tiny_checkpoint
    parameters.self_ensemble = True
    job = logic.process_parameters(parameters, wait=False)
    job.cancel()  # only the command line matters here
    assert "--self-ensemble" in job.process.command


def test_confidence_choice_reaches_the_script(ct_node, logic, tiny_checkpoint):
    parameters = logic.parameters(ct_node.GetScene())
    parameters.input_volume = ct_node
    parameters.model, parameters.model_path = "file", tiny_checkpoint
    job = logic.process_parameters(parameters, wait=False)
    job.cancel()
    assert "--confidence" not in job.process.command  # off by default: no 8 extra restorations
    parameters.confidence_map = True
    job = logic.process_parameters(parameters, wait=False)
    job.cancel()  # only the command line matters here
    command = job.process.command
    assert command[command.index("--confidence") + 1] == os.path.join(job.workdir, "confidence.nrrd")


@pytest.mark.slow
def test_confidence_map_arrives_as_a_second_volume_in_the_background(scene, ct_node, logic, tiny_checkpoint, tmp_path):
    from monai_tat.inference import load_model
    from monai_tat.inference.confidence import restore_with_confidence
    from monai_tat.io import write_volume

    colours = slicer.vtkMRMLColorLogic()
    colours.SetMRMLScene(scene)
    parameters = logic.parameters(scene)
    parameters.input_volume = ct_node
    parameters.task = "CT"
    parameters.model, parameters.model_path = "file", tiny_checkpoint
    parameters.confidence_map = True
    progress = []
    job = logic.process_parameters(parameters, wait=False,
                                   progress_callback=lambda done, total, left: progress.append((done, total)))
    assert job.running and job.confidence_node is None  # the panel stays live: nothing in the scene yet
    assert job.wait(timeout_s=300) == SUCCEEDED
    assert progress[-1] == (32, 32)  # 4 slices x 8 views, reported as one progress
    confidence = job.confidence_node
    assert [n.GetName() for n in volume_nodes(scene)] == ["SyntheticCT", "SyntheticCT restored", "SyntheticCT confidence"]
    # Same grid as the input, bit for bit; units recorded; heat colours, automatic window.
    assert confidence.GetImageData().GetDimensions() == ct_node.GetImageData().GetDimensions()
    assert np.array_equal(volumes.ijk_to_ras(confidence), volumes.ijk_to_ras(ct_node))
    assert confidence.GetAttribute("MedicalRestore.ConfidenceUnits") == "HU"
    assert "do not trust fine detail" in confidence.GetAttribute("MedicalRestore.ConfidenceReading")
    assert confidence.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeIron"
    assert confidence.GetDisplayNode().GetAutoWindowLevel()
    # The values are the library's map of the same volume, in HU.
    volumes.write_volume_file(ct_node, str(tmp_path / "input.nrrd"))
    _, expected = restore_with_confidence(str(tmp_path / "input.nrrd"), load_model(tiny_checkpoint), "ct", device="cpu")
    write_volume(expected, tmp_path / "expected.nrrd")
    expected_voxels = volumes.voxels_on_grid(volumes.read_volume_file(str(tmp_path / "expected.nrrd")), ct_node)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(confidence), expected_voxels, atol=1e-2)
    assert float(expected_voxels.max()) > 0


# --- clear errors before anything starts ------------------------------------------------------


def _two_component_volume(scene):
    # How a two-frame series looks when loaded into a scalar volume node: two values per voxel.
    image = vtk.vtkImageData()
    image.SetDimensions(8, 8, 4)
    image.AllocateScalars(vtk.VTK_FLOAT, 2)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "TwoFrames")
    node.SetAndObserveImageData(image)
    return node


def _vector_volume(scene):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "Vector")
    slicer.util.updateVolumeFromArray(node, np.zeros((4, 8, 8, 3), dtype=np.float32))
    return node


def _sequence_frame(scene):
    node = testing.add_synthetic_ct(scene, name="Frame")
    # Slicer's Sequences module registers these classes; a bare scene needs them registered here.
    scene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())
    scene.RegisterNodeClass(slicer.vtkMRMLSequenceNode())
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "Dynamic PET")
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "Frames")
    sequence.SetDataNodeAtValue(node, "0")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.AddProxyNode(node, sequence, False)
    return node


def _label_map(scene):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Labels")
    slicer.util.updateVolumeFromArray(node, np.zeros((4, 8, 8), dtype=np.uint8))
    return node


def _empty_volume(scene):
    return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "Empty")


@pytest.mark.parametrize(
    "make_node, message",
    [
        (lambda scene: None, "No input volume"),
        (lambda scene: testing.add_synthetic_ct(scene, name="OneSlice", shape_kji=(1, 32, 32)), "is 2D"),
        (lambda scene: testing.add_synthetic_ct(scene, name="Line", shape_kji=(4, 1, 32)), "is 2D"),
        (_two_component_volume, "4D or multi-component"),
        (_vector_volume, "4D, vector or colour"),
        (_sequence_frame, "frame of a 4D sequence"),
        (_label_map, "label map"),
        (_empty_volume, "no voxel data"),
    ],
    ids=["no volume", "2D slice", "2D line", "4D components", "vector", "sequence frame", "label map", "empty"],
)
def test_unusable_input_volume_is_refused(scene, logic, private_tempdir, make_node, message):
    node = make_node(scene)
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(RestoreInputError, match=message):
        logic.process(node, None, "ct", "tat", "cpu")
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(private_tempdir.iterdir()) == []  # nothing was started


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"model": "/no/such/checkpoint.pt"}, "Model not found"),
        ({"model": ""}, "No model chosen"),
        ({"device": "tpu"}, "Unknown device 'tpu'"),
        ({"batch_size": -2}, "Batch size must be a positive whole number"),
        ({"output": "input"}, "the input is never overwritten"),
        ({"output": "labelmap"}, "choose a scalar volume"),
    ],
    ids=["missing model", "no model", "device", "batch", "output is input", "label output"],
)
def test_wrong_choices_are_refused(scene, ct_node, logic, private_tempdir, state_of, same_state, arguments, message):
    before = state_of(ct_node)
    output = {
        None: None,
        "input": ct_node,
        "labelmap": scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels"),
    }[arguments.get("output")]
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(RestoreInputError, match=message):
        logic.process(
            ct_node,
            output,
            arguments.get("task", "ct"),
            arguments.get("model", "tat"),
            arguments.get("device", "cpu"),
            batch_size=arguments.get("batch_size"),
        )
    assert scene.GetNumberOfNodes() == nodes_before
    assert list(private_tempdir.iterdir()) == []
    same_state(before, state_of(ct_node))


def test_missing_packages_are_named(ct_node, logic, monkeypatch, private_tempdir):
    monkeypatch.setattr(type(logic), "missing_dependencies", staticmethod(lambda: ["torch", "monai_tat"]))
    with pytest.raises(RestoreInputError, match="Missing Python packages: torch, monai_tat"):
        logic.process(ct_node, None, "ct", "tat", "cpu")
    assert list(private_tempdir.iterdir()) == []



@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "0", "gpu", "gpu:1", "mps", "tpu", "cuda:x", "xla"])
def test_panel_accepts_exactly_the_devices_the_library_accepts(device):
    """What the panel lets through, monai_tat's resolve_device takes (CUDA may be absent here: that
    is refused by the library with the device named as the setting, not as unknown)."""
    from monai_tat.errors import UserInputError
    from monai_tat.inference.devices import resolve_device

    try:
        normalized = normalize_device(device)
    except RestoreInputError as error:
        assert "auto, cpu, or an NVIDIA GPU (CUDA)" in str(error)
        normalized = None
    try:
        resolve_device(normalized if normalized is not None else device)
        library_accepts = True
    except UserInputError as error:
        library_accepts = getattr(error, "setting", None) == "device" or "does not exist" in str(error)
    except (RuntimeError, TypeError):
        library_accepts = False
    assert (normalized is not None) == library_accepts, (device, normalized)
    for choice in DEVICE_CHOICES:  # every offered choice passes
        assert normalize_device(choice) == choice


def test_half_precision_is_offered_for_cuda_and_refused_on_the_cpu(ct_node, logic):
    assert AMP_CHOICES == ("none", "bf16", "fp16")
    assert logic.build_command("in", "out", "ct", "tat", "cuda:0", amp="fp16")[-2:] == ["--amp", "fp16"]
    assert "--amp" not in logic.build_command("in", "out", "ct", "tat", "cpu")
    with pytest.raises(RestoreInputError, match="Half precision \\(fp16\\) runs on a CUDA GPU only"):
        logic.process(ct_node, None, "ct", "tat", "cpu", amp="fp16")
    with pytest.raises(RestoreInputError, match="Unknown precision"):
        logic.process(ct_node, None, "ct", "tat", "auto", amp="fp8")
    import argparse

    from monai_tat.cli.restore import register  # the same choices as `monai-tat restore --amp`

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    restore = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["restore"]
    amp_action = next(action for action in restore._actions if "--amp" in action.option_strings)
    assert tuple(amp_action.choices) == AMP_CHOICES


def test_unknown_sample_task_is_refused(scene):
    from MedicalRestoreLib import sample_data

    with pytest.raises(RestoreInputError, match="No sample for task 'xray'"):
        sample_data.generate_sample_volume(scene, "xray")
    assert set(sample_data.SAMPLES) == {"ct", "pet", "mri"}
