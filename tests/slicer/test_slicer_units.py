"""Units in the Slicer module: a PET from DICOM restored in SUV and given back in Bq/mL; foreign units refused.

Real MRML (slicer-core); Slicer's DICOM database is stood in for by a mapping from instance UID to
file (the logic's ``dicom_file_for_instance`` seam); the DICOM PET is written by the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from dicom_pet import SUV_FACTOR, add_dicom_pet_node

from MedicalRestoreLib import RestoreInputError, SUCCEEDED, testing, volumes


def volume_names(scene) -> list:
    count = scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode")
    return [scene.GetNthNodeByClass(i, "vtkMRMLVolumeNode").GetName() for i in range(count)]


def test_the_dicom_files_behind_a_node_come_from_its_instance_uids(scene, tmp_path):
    node, database = add_dicom_pet_node(scene, tmp_path / "pet", testing.synthetic_pet_array((3, 8, 8)))
    uids = volumes.dicom_instance_uids(node)
    assert len(uids) == 3 and set(uids) == set(database)
    assert volumes.dicom_files(node, database.get) == [database[uid] for uid in uids]
    # Files the database no longer has, or that were deleted, are left out.
    partial = dict(database)
    del partial[uids[0]]
    (tmp_path / "pet" / "pet002.dcm").unlink()
    assert volumes.dicom_files(node, partial.get) == [database[uids[1]]]
    # No DICOM provenance, or no DICOM database (plain MRML): no files.
    assert volumes.dicom_files(testing.add_synthetic_ct(scene), database.get) == []
    assert volumes.dicom_files(node) == []


@pytest.mark.slow
def test_pet_from_dicom_is_restored_in_suv_and_given_back_in_bqml(scene, logic, tiny_checkpoint, tmp_path,
                                                                 state_of, same_state):
    from monai_tat.inference import restore_file
    from monai_tat.tasks import get_task

    suv = testing.synthetic_pet_array((3, 24, 24))
    node, database = add_dicom_pet_node(scene, tmp_path / "pet", suv)
    before = state_of(node)
    bqml = slicer.util.arrayFromVolume(node).copy()
    assert np.percentile(bqml, 99) > 1000.0  # Slicer's DICOM import gives activity concentration
    logic.dicom_file_for_instance = database.get

    job = logic.process(node, None, "auto", tiny_checkpoint, "cpu", wait=True)

    assert job.state == SUCCEEDED and job.task == "pet"
    assert any("SUV factor" in line and "Bq/mL" in line for line in job.log), job.log
    restored = slicer.util.arrayFromVolume(job.output_node)
    # Given back in Bq/mL, the input's units; the SUV display window shown in them.
    assert restored.shape == bqml.shape and np.percentile(restored, 99) > 1000.0
    low, high = get_task("pet").display_window
    assert job.display_window == pytest.approx((low / SUV_FACTOR, high / SUV_FACTOR))
    # Restored in SUV: the same as restoring the volume through the library with the DICOM SUV factor.
    volumes.write_volume_file(node, str(tmp_path / "in.nrrd"))
    restore_file(tmp_path / "in.nrrd", tmp_path / "expected.nrrd", tiny_checkpoint, task="pet", device="cpu",
                 suv_factor=SUV_FACTOR)
    expected = volumes.voxels_on_grid(volumes.read_volume_file(str(tmp_path / "expected.nrrd")), node)
    np.testing.assert_allclose(restored, expected, rtol=1e-4, atol=1e-2)
    assert not np.array_equal(restored, bqml)
    same_state(before, state_of(node))


@pytest.mark.slow
def test_pet_in_bqml_without_dicom_files_is_refused_with_what_to_do(scene, logic, tiny_checkpoint):
    node = testing.add_volume(scene, "PET export", testing.synthetic_pet_array((3, 24, 24)) / np.float32(SUV_FACTOR))
    node.SetAttribute("DICOM.Modality", "PT")
    with pytest.raises(RestoreInputError) as err:
        logic.process(node, None, "auto", tiny_checkpoint, "cpu", wait=True)
    message = str(err.value)
    assert "Bq/mL" in message and "not in SUV" in message and "DICOM module" in message
    assert volume_names(scene) == ["PET export"]


@pytest.mark.slow
def test_ct_in_stored_values_is_refused_by_the_logic(scene, logic, tiny_checkpoint):
    stored = (testing.synthetic_ct_array((3, 24, 24)).astype(np.int32) + 1024).astype(np.int16)
    node = testing.add_volume(scene, "CT stored", stored)
    with pytest.raises(RestoreInputError) as err:
        logic.process(node, None, "ct", tiny_checkpoint, "cpu", wait=True)
    message = str(err.value)
    assert "stored values" in message and "not in HU" in message
    assert volume_names(scene) == ["CT stored"]
