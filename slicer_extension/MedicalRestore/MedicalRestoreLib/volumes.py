"""MRML side of a restoration: check the input node, hand it over as a file, take the result back.

Needs MRML only (``slicer`` from Slicer or from the ``slicer-core`` package) and VTK; no Qt.
Volumes travel as NRRD files written and read by MRML's own storage node, so the file carries
exactly the node's voxels and IJK-to-RAS geometry. No task knowledge lives here: the DICOM
modality is passed on as recorded, and the display window is the one the background process
read from monai_tat's task registry.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple

import numpy as np
import slicer
import vtk

from MedicalRestoreLib.errors import RestoreError, RestoreInputError

DICOM_MODALITY_ATTRIBUTE = "DICOM.Modality"  # where Slicer's DICOM import records (0008,0060)
DICOM_INSTANCE_UIDS_ATTRIBUTE = "DICOM.instanceUIDs"  # SOP instance UIDs of the files behind a DICOM volume

# Slicer colour table per task name (grey when not listed): PET is read as dark uptake on a white
# background, the nuclear-medicine convention. A rendering choice of Slicer, not a task property.
TASK_COLOR_NODE_IDS = {"pet": "vtkMRMLColorTableNodeInvertedGrey"}
GREY_COLOR_NODE_ID = "vtkMRMLColorTableNodeGrey"
# A confidence map reads as heat: dark where every view agreed, bright where not to trust detail.
HEAT_COLOR_NODE_ID = "vtkMRMLColorTableNodeIron"


def volume_dimensions(node) -> tuple:
    """(I, J, K) voxel counts of a volume node's image, (0, 0, 0) without image."""
    image = node.GetImageData() if node is not None else None
    return tuple(image.GetDimensions()) if image is not None else (0, 0, 0)


def ijk_to_ras(node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (spacing, directions and origin together), in mm."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(row, col) for col in range(4)] for row in range(4)])


def check_input_volume(node) -> None:
    """Raise :class:`RestoreInputError` unless ``node`` is a 3D single-component scalar volume.

    Checked: a node is given; it is a scalar volume, not a label map, vector or 4D volume; it is
    not a frame of a sequence (a 4D series shown one frame at a time); it has voxel data; it has
    at least two voxels along every axis (a single slice is 2D).
    """
    if node is None:
        raise RestoreInputError("No input volume: load a CT, PET or MRI volume and select it as input.")
    name = node.GetName()
    if node.IsA("vtkMRMLLabelMapVolumeNode") or node.IsA("vtkMRMLSegmentationNode"):
        raise RestoreInputError(
            f"'{name}' is a label map / segmentation, not an image: select a CT, PET or MRI volume."
        )
    if node.IsA("vtkMRMLVectorVolumeNode") or node.IsA("vtkMRMLMultiVolumeNode") or node.IsA(
        "vtkMRMLTensorVolumeNode"
    ):
        raise RestoreInputError(
            f"'{name}' has several values per voxel (4D, vector or colour volume); restoration takes a 3D "
            "scalar volume: extract one frame or component first."
        )
    if not node.IsA("vtkMRMLScalarVolumeNode"):
        raise RestoreInputError(f"'{name}' is a {node.GetClassName()}, not a volume: select a CT, PET or MRI volume.")
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise RestoreInputError(f"'{name}' holds no voxel data: load the image again.")
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        raise RestoreInputError(
            f"'{name}' has {components} values per voxel (4D or multi-component volume); restoration takes a "
            "3D scalar volume: extract one frame or component first."
        )
    dims = image.GetDimensions()
    if min(dims) < 2:
        raise RestoreInputError(
            f"'{name}' is 2D (dimensions {dims[0]} x {dims[1]} x {dims[2]}); the module restores 3D volumes: "
            "load the whole series, or use `monai-tat restore` for single images."
        )
    if _is_sequence_frame(node):
        raise RestoreInputError(
            f"'{name}' is the current frame of a 4D sequence; restoration takes a 3D volume: clone the frame "
            "(Data module, right-click, Clone) and restore the clone."
        )


def _is_sequence_frame(node) -> bool:
    """True when a sequence browser shows its frames through ``node`` (the node is a proxy)."""
    scene = node.GetScene()
    if scene is None:
        return False
    browser_class = "vtkMRMLSequenceBrowserNode"
    return any(
        scene.GetNthNodeByClass(index, browser_class).IsProxyNodeID(node.GetID())
        for index in range(scene.GetNumberOfNodesByClass(browser_class))
    )


def _subject_hierarchy(scene):
    """The scene's subject hierarchy node if it has one (Slicer always does); never creates one."""
    if scene.GetNumberOfNodesByClass("vtkMRMLSubjectHierarchyNode") == 0:
        return None
    return scene.GetNthNodeByClass(0, "vtkMRMLSubjectHierarchyNode")


def dicom_modality(node) -> Optional[str]:
    """The DICOM Modality recorded for the volume (``"CT"``, ``"PT"``, ``"MR"`` ...), or None.

    Read from the node's attribute, else from its subject hierarchy item (where Slicer's DICOM
    import stores it); passed on as it is, for monai_tat's task registry to interpret.
    """
    modality = node.GetAttribute(DICOM_MODALITY_ATTRIBUTE)
    scene = node.GetScene()
    if not modality and scene is not None:
        hierarchy = _subject_hierarchy(scene)
        if hierarchy is not None:
            item = hierarchy.GetItemByDataNode(node)
            if item:
                modality = hierarchy.GetItemAttribute(item, DICOM_MODALITY_ATTRIBUTE)
    modality = (modality or "").strip().upper()
    return modality or None


def dicom_instance_uids(node) -> List[str]:
    """The SOP Instance UIDs of the DICOM files Slicer's DICOM import loaded ``node`` from ([] when none)."""
    return (node.GetAttribute(DICOM_INSTANCE_UIDS_ATTRIBUTE) or "").split()


def database_file_for_instance(uid: str) -> Optional[str]:
    """The file of a SOP Instance UID in Slicer's DICOM database (None without a database or file)."""
    database = getattr(slicer, "dicomDatabase", None)
    if database is None:
        return None
    return database.fileForInstance(uid) or None


def dicom_files(node, file_for_instance: Optional[Callable[[str], Optional[str]]] = None) -> List[str]:
    """The existing DICOM files behind ``node``, from its instance UIDs and the DICOM database.

    Args:
        node: a volume node; only read.
        file_for_instance: ``uid -> file path or None``; default Slicer's DICOM database
            (:func:`database_file_for_instance`).

    Returns:
        The files in the order of the UIDs, [] when the node has no DICOM provenance or none of its
        files can be found (the database was changed, the files moved).
    """
    lookup = file_for_instance or database_file_for_instance
    files = (lookup(uid) for uid in dicom_instance_uids(node))
    return [path for path in files if path and os.path.isfile(path)]


def write_volume_file(node, path: str) -> None:
    """Write the node's voxels and geometry to ``path`` (NRRD) without touching the node.

    The storage node is not added to the scene nor attached to ``node``, so the scene and the
    node's own storage settings stay as they were.
    """
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(path)
    storage.SetUseCompression(0)  # a temporary file: speed over size
    if not storage.WriteData(node):
        raise RestoreError(f"Could not write '{node.GetName()}' to the temporary file {path}.")


def read_volume_file(path: str):
    """Read a volume file into a new scalar volume node that is not in any scene."""
    node = slicer.vtkMRMLScalarVolumeNode()
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(path)
    if not storage.ReadData(node) or node.GetImageData() is None:
        raise RestoreError(f"Could not read the restored volume from {path}.")
    return node


def voxels_on_grid(result, reference, tolerance_mm: float = 1e-3) -> np.ndarray:
    """``result``'s voxels as a (K, J, I) array in ``reference``'s voxel order.

    File readers may store the same grid with axes swapped or reversed (MRML's reader makes a
    left-handed grid right-handed by reversing the slice order), so the two grids are compared
    physically: the result's voxel indices must map onto the reference's by a permutation with
    flips. Anything else (resampled, shifted, other size) raises :class:`RestoreError`.
    """
    dims = np.array(volume_dimensions(reference))
    mapping = np.linalg.inv(ijk_to_ras(reference)) @ ijk_to_ras(result)  # result IJK -> reference IJK
    rotation = np.round(mapping[:3, :3])
    offset = mapping[:3, 3]
    spacing = np.array(reference.GetSpacing())
    is_signed_permutation = (
        np.all(np.isfinite(mapping))
        and np.all(np.abs(rotation).sum(axis=0) == 1)
        and np.all(np.abs(rotation).sum(axis=1) == 1)
        and np.all(np.abs(mapping[:3, :3] - rotation) * spacing[:, None] <= tolerance_mm)
    )
    if not is_signed_permutation:
        raise RestoreError(
            "The restored volume does not lie on the input's voxel grid (its axes are rotated or scaled); "
            "the result was discarded."
        )
    source_axis = np.argmax(np.abs(rotation), axis=1)  # reference axis a <- result axis source_axis[a]
    flipped = rotation[np.arange(3), source_axis] < 0
    result_dims = np.array(volume_dimensions(result))
    expected_offset = np.where(flipped, dims - 1, 0)
    if np.any(result_dims[source_axis] != dims) or np.any(np.abs(offset - expected_offset) * spacing > tolerance_mm):
        raise RestoreError(
            f"The restored volume (dimensions {tuple(int(v) for v in result_dims)}) does not cover the input's "
            f"grid (dimensions {tuple(int(v) for v in dims)}); the result was discarded."
        )
    voxels_ijk = slicer.util.arrayFromVolume(result).transpose(2, 1, 0)
    voxels_ijk = voxels_ijk.transpose(tuple(int(axis) for axis in source_axis))
    voxels_ijk = np.flip(voxels_ijk, axis=tuple(int(axis) for axis in np.flatnonzero(flipped)))
    return np.ascontiguousarray(voxels_ijk.transpose(2, 1, 0))


def fill_output_volume(output, result, reference) -> None:
    """Give ``output`` the voxels of ``result`` and exactly the geometry of ``reference``.

    The geometry (spacing, origin, IJK-to-RAS directions) and the parent transform are copied
    from the input node itself, not from the file, so they are bit-identical to the input's.
    """
    fill_output_voxels(output, voxels_on_grid(result, reference), reference)


def fill_output_voxels(output, voxels: np.ndarray, reference) -> None:
    """Give ``output`` the ``voxels`` (a (K, J, I) array on ``reference``'s grid, see
    :func:`voxels_on_grid`) and exactly the geometry of ``reference``."""
    image = vtk.vtkImageData()
    was_modifying = output.StartModify()
    output.SetAndObserveImageData(image)
    slicer.util.updateVolumeFromArray(output, voxels)
    output.CopyOrientation(reference)
    output.SetAndObserveTransformNodeID(reference.GetTransformNodeID())
    output.EndModify(was_modifying)


def apply_task_display(
    output, task: Optional[str], window: Optional[Tuple[float, float]] = None, reference=None
) -> None:
    """Show the restored volume as its task asks.

    Args:
        output: the restored volume node.
        task: the task the background process reported, or None when it reported none.
        window: that task's display window ``(low, high)`` in physical units, as the background
            process read it from monai_tat's task registry (HU for CT, SUV for PET); None for an
            automatic window (MRI).
        reference: the input node, whose look is copied when no task was reported.
    """
    if output.GetDisplayNode() is None:
        output.CreateDefaultDisplayNodes()
    display = output.GetDisplayNode()
    if display is None:
        return  # no scene to hold a display node
    was_modifying = display.StartModify()
    if task is None:
        source = reference.GetDisplayNode() if reference is not None else None
        if source is not None:
            display.SetAndObserveColorNodeID(source.GetColorNodeID())
            display.SetAutoWindowLevel(source.GetAutoWindowLevel())
            display.SetWindowLevel(source.GetWindow(), source.GetLevel())
        else:
            display.AutoWindowLevelOn()
    else:
        color_id = TASK_COLOR_NODE_IDS.get(task, GREY_COLOR_NODE_ID)
        scene = output.GetScene()
        if scene is not None and scene.GetNodeByID(color_id) is not None:
            display.SetAndObserveColorNodeID(color_id)
        if window is None:
            display.AutoWindowLevelOn()
        else:
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(float(window[0]), float(window[1]))
    display.EndModify(was_modifying)


def apply_heat_display(node) -> None:
    """Show a map (the confidence map) with the heat colour table and an automatic window."""
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is None:
        return
    scene = node.GetScene()
    if scene is not None and scene.GetNodeByID(HEAT_COLOR_NODE_ID) is not None:
        display.SetAndObserveColorNodeID(HEAT_COLOR_NODE_ID)
    display.AutoWindowLevelOn()


def place_beside(output, reference) -> None:
    """Put the output in the same subject hierarchy folder / study as the input, when there is one."""
    scene = output.GetScene()
    if scene is None:
        return
    hierarchy = _subject_hierarchy(scene)
    if hierarchy is None:
        return
    reference_item = hierarchy.GetItemByDataNode(reference)
    output_item = hierarchy.GetItemByDataNode(output)
    if reference_item and output_item:
        hierarchy.SetItemParent(output_item, hierarchy.GetItemParent(reference_item))
