"""The module logic against real MRML objects (slicer-core): restore, cancel, clear errors."""

from __future__ import annotations

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


def volume_nodes(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLVolumeNode") for i in range(scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"))]


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


def test_non_blocking_restore_into_existing_node_with_automatic_task(scene, ct_node, logic, tiny_checkpoint):
    ct_node.SetAttribute("DICOM.Modality", "CT")  # as Slicer's DICOM import records it
    target = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "my output")
    progress, finished = [], []

    job = logic.process(
        ct_node,
        target,
        "Auto",
        tiny_checkpoint,
        "auto",
        wait=False,
        batch_size=3,
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
    assert job.task == "ct"
    assert np.array_equal(volumes.ijk_to_ras(target), volumes.ijk_to_ras(ct_node))
    assert len(volume_nodes(scene)) == 2


@pytest.mark.parametrize("when", ["at once", "at the first progress report"])
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


def test_checkpoint_of_another_network_fails_cleanly(scene, ct_node, logic, tmp_path, private_tempdir):
    import torch

    wrong = tmp_path / "not_a_restoration_network.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, wrong)

    with pytest.raises(RestoreInputError, match="Restoration failed"):
        logic.process(ct_node, None, "ct", str(wrong), "cpu", wait=True)
    assert [n.GetName() for n in volume_nodes(scene)] == ["SyntheticCT"]
    assert list(private_tempdir.iterdir()) == []


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
        ({"task": "ultrasound"}, "Unknown task 'ultrasound': choose Auto, CT, PET or MRI"),
        ({"task": "MRI", "modality": "CT"}, "Task MRI does not match .*DICOM modality says CT"),
        ({"model": "/no/such/checkpoint.pt"}, "Model not found"),
        ({"model": ""}, "No model chosen"),
        ({"device": "tpu"}, "Unknown device 'tpu'"),
        ({"batch_size": -2}, "Batch size must be a positive whole number"),
        ({"output": "input"}, "the input is never overwritten"),
        ({"output": "labelmap"}, "choose a scalar volume"),
    ],
    ids=["unknown task", "task contradicts modality", "missing model", "no model", "device", "batch", "output is input", "label output"],
)
def test_wrong_choices_are_refused(scene, ct_node, logic, private_tempdir, state_of, same_state, arguments, message):
    before = state_of(ct_node)
    if "modality" in arguments:
        ct_node.SetAttribute("DICOM.Modality", arguments["modality"])
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


def test_restore_errors_are_value_errors():
    # Callers that catch ValueError (as for monai_tat's UserInputError) catch these too.
    assert issubclass(RestoreInputError, ValueError)
