"""MRML helpers: file hand-over, putting the result on the input's grid, task displays."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

from MedicalRestoreLib import RestoreError, volumes, testing


def node_with(scene, voxels_kji, ijk_to_ras, name="result"):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    matrix = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            matrix.SetElement(row, column, ijk_to_ras[row][column])
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(voxels_kji))
    return node


@pytest.mark.parametrize(
    "directions",
    [testing.TEST_DIRECTIONS, ((1, 0, 0), (0, 1, 0), (0, 0, 1)), ((0, 0, 1), (1, 0, 0), (0, 1, 0))],
    ids=["flipped and swapped", "identity", "rotated axes"],
)
def test_file_round_trip_gives_back_the_same_voxels_on_the_same_grid(scene, tmp_path, directions, state_of, same_state):
    node = testing.add_synthetic_ct(scene, shape_kji=(5, 7, 9), directions=directions)
    before = state_of(node)
    volumes.write_volume_file(node, str(tmp_path / "in.nrrd"))
    same_state(before, state_of(node))  # writing leaves the node as it was
    assert node.GetStorageNode() is None and scene.GetNumberOfNodes() == 1

    result = volumes.read_volume_file(str(tmp_path / "in.nrrd"))
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    volumes.fill_output_volume(output, result, node)
    assert np.array_equal(slicer.util.arrayFromVolume(output), before["voxels"])
    assert np.array_equal(volumes.ijk_to_ras(output), before["ijk_to_ras"])


def test_result_stored_with_reversed_and_swapped_axes_is_put_back_on_the_input_grid(scene, ct_node):
    reference = volumes.ijk_to_ras(ct_node)
    voxels = slicer.util.arrayFromVolume(ct_node).astype(np.float32)  # (K, J, I)
    # The same physical image stored with I and J swapped and K reversed.
    stored = np.flip(voxels.transpose(0, 2, 1), axis=0)
    k_count = voxels.shape[0]
    stored_matrix = reference[:, [1, 0, 2, 3]].copy()
    stored_matrix[:, 2] *= -1
    stored_matrix[:3, 3] = reference[:3, 3] + reference[:3, 2] * (k_count - 1)
    result = node_with(scene, stored, stored_matrix)

    assert np.array_equal(volumes.voxels_on_grid(result, ct_node), voxels)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m @ np.diag([2.0, 1.0, 1.0, 1.0]), "rotated or scaled"),
        (lambda m: np.vstack([m[:3] + np.array([[0, 0, 0, 5.0]] * 3), m[3:]]), "does not cover"),
    ],
    ids=["resampled", "shifted"],
)
def test_result_on_another_grid_is_refused(scene, ct_node, change, message):
    voxels = slicer.util.arrayFromVolume(ct_node).astype(np.float32)
    result = node_with(scene, voxels, change(volumes.ijk_to_ras(ct_node)))
    with pytest.raises(RestoreError, match=message):
        volumes.voxels_on_grid(result, ct_node)


def test_result_of_another_size_is_refused(scene, ct_node):
    result = node_with(scene, np.zeros((3, 32, 32), np.float32), volumes.ijk_to_ras(ct_node))
    with pytest.raises(RestoreError, match="does not cover"):
        volumes.voxels_on_grid(result, ct_node)


def test_output_follows_the_input_parent_transform(scene, ct_node, tmp_path):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    ct_node.SetAndObserveTransformNodeID(transform.GetID())
    volumes.write_volume_file(ct_node, str(tmp_path / "in.nrrd"))
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    volumes.fill_output_volume(output, volumes.read_volume_file(str(tmp_path / "in.nrrd")), ct_node)
    assert output.GetTransformNodeID() == transform.GetID()


def with_colour_tables(scene):
    logic = slicer.vtkMRMLColorLogic()
    logic.SetMRMLScene(scene)  # adds Slicer's default colour tables, as in the application
    return logic


def test_task_displays_use_the_registry_windows(scene, ct_node):
    from monai_tat.tasks import get_task

    colours = with_colour_tables(scene)
    pet_window = get_task("pet").display_window
    pet = node_with(scene, np.linspace(0, 30, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8), np.eye(4), "pet")
    volumes.apply_task_display(pet, "pet", pet_window)
    display = pet.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeInvertedGrey"
    assert not display.GetAutoWindowLevel()
    # The registry's SUV window (0 to 10), not the image's own range (0 to 30).
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == pytest.approx(pet_window) == (0.0, 10.0)

    ct = node_with(scene, np.zeros((4, 8, 8), np.float32), np.eye(4), "ct")
    volumes.apply_task_display(ct, "ct", get_task("ct").display_window)
    assert (ct.GetDisplayNode().GetWindow(), ct.GetDisplayNode().GetLevel()) == (400.0, 40.0)  # W400 / L40 HU
    assert ct.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeGrey"

    assert get_task("mri").display_window is None
    mri = node_with(scene, np.zeros((4, 8, 8), np.float32), np.eye(4), "mri")
    volumes.apply_task_display(mri, "mri", None)
    assert mri.GetDisplayNode().GetAutoWindowLevel()

    # A node that showed a PET before gets grey back for a CT.
    volumes.apply_task_display(pet, "ct", get_task("ct").display_window)
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeGrey" and display.GetWindow() == 400.0

    # No task reported: the input's look is kept.
    ct_node.CreateDefaultDisplayNodes()
    ct_node.GetDisplayNode().AutoWindowLevelOff()
    ct_node.GetDisplayNode().SetWindowLevel(1500.0, -600.0)
    other = node_with(scene, np.zeros((4, 8, 8), np.float32), np.eye(4), "other")
    volumes.apply_task_display(other, None, reference=ct_node)
    assert (other.GetDisplayNode().GetWindow(), other.GetDisplayNode().GetLevel()) == (1500.0, -600.0)
    assert colours is not None


def test_modality_comes_from_the_node_or_the_subject_hierarchy_as_recorded(scene, ct_node):
    assert volumes.dicom_modality(ct_node) is None
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    item = hierarchy.GetItemByDataNode(ct_node) or hierarchy.CreateItem(hierarchy.GetSceneItemID(), ct_node)
    hierarchy.SetItemAttribute(item, "DICOM.Modality", "PT")
    assert volumes.dicom_modality(ct_node) == "PT"  # passed on as recorded, for monai_tat to interpret
    ct_node.SetAttribute("DICOM.Modality", " us ")
    assert volumes.dicom_modality(ct_node) == "US"
