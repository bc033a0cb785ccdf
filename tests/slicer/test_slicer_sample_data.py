"""Sample data: a demo phantom becomes a volume node with its modality (PET here, in SUV; the CT
phantom is made and restored in test_slicer_install_tree.py; MRI takes the same path)."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from MedicalRestoreLib import sample_data, volumes


@pytest.mark.slow
@pytest.mark.parametrize(("task", "modality"), [("pet", "PT")])
def test_phantom_becomes_a_volume_node_with_its_modality(scene, logic, task, modality):
    # The conftest's logic fixture carries the background processes' environment.
    node = sample_data.generate_sample_volume(scene, task, env=logic.env, size=48, slices=2)
    assert node.GetScene() is scene and node.GetName() == sample_data.SAMPLES[task]
    assert volumes.dicom_modality(node) == modality
    voxels = slicer.util.arrayFromVolume(node)
    assert voxels.shape[0] == 2 and np.isfinite(voxels).all() and voxels.std() > 0
    assert node.GetDisplayNode() is not None
