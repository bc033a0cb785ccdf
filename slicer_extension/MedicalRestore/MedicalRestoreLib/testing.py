"""Synthetic data for the module's self-test in Slicer and for the CI tests with slicer-core.

Nothing here downloads anything: the CT volume is drawn in code and the checkpoint is a tiny,
untrained TAT (the test checks geometry and plumbing, not image quality).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import slicer
import vtk

# IJK-to-RAS directions with a flip and an axis swap, so a lost orientation cannot go unnoticed.
TEST_DIRECTIONS = ((0.0, -1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0))


def synthetic_ct_array(shape_kji: Sequence[int] = (4, 32, 32), seed: int = 0) -> np.ndarray:
    """A noisy CT-like phantom in HU, int16, shape (K, J, I) = (slices, rows, columns).

    Air (-1000 HU) around a water disc (0 HU) holding a bone-like core (700 HU), plus noise.
    """
    slices, rows, columns = shape_kji
    j, i = np.mgrid[0:rows, 0:columns]
    radius = np.hypot(j - (rows - 1) / 2, i - (columns - 1) / 2)
    plane = np.where(radius < 0.4 * min(rows, columns), 0.0, -1000.0)
    plane[radius < 0.12 * min(rows, columns)] = 700.0
    noise = np.random.default_rng(seed).normal(0.0, 40.0, size=(slices, rows, columns))
    return np.clip(plane[None] + noise, -1024, 3071).astype(np.int16)


def synthetic_pet_array(shape_kji: Sequence[int] = (4, 32, 32), seed: int = 0) -> np.ndarray:
    """A noisy PET-like phantom in SUV, float32, shape (K, J, I): a body disc at 1.5 with an 8 SUV lesion."""
    slices, rows, columns = shape_kji
    j, i = np.mgrid[0:rows, 0:columns]
    radius = np.hypot(j - (rows - 1) / 2, i - (columns - 1) / 2)
    plane = np.where(radius < 0.4 * min(rows, columns), 1.5, 0.0)
    plane[radius < 0.12 * min(rows, columns)] = 8.0
    noise = np.random.default_rng(seed).normal(0.0, 0.1, size=(slices, rows, columns))
    return np.clip(plane[None] + noise * (plane[None] > 0), 0.0, None).astype(np.float32)


def add_synthetic_ct(
    scene,
    name: str = "SyntheticCT",
    shape_kji: Sequence[int] = (4, 32, 32),
    spacing: Sequence[float] = (0.7, 0.8, 2.5),
    origin: Sequence[float] = (12.5, -30.0, 41.0),
    directions: Sequence[Sequence[float]] = TEST_DIRECTIONS,
):
    """Add a synthetic CT scalar volume node with a non-trivial geometry to ``scene``."""
    return add_volume(scene, name, synthetic_ct_array(shape_kji), spacing, origin, directions)


def add_volume(
    scene,
    name: str,
    voxels_kji: np.ndarray,
    spacing: Sequence[float] = (0.7, 0.8, 2.5),
    origin: Sequence[float] = (12.5, -30.0, 41.0),
    directions: Sequence[Sequence[float]] = TEST_DIRECTIONS,
):
    """Add a scalar volume node holding ``voxels_kji`` (K, J, I) with the given geometry to ``scene``."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetSpacing(*spacing)
    node.SetOrigin(*origin)
    matrix = vtk.vtkMatrix4x4()
    for column, direction in enumerate(directions):
        for row in range(3):
            matrix.SetElement(row, column, direction[row])
    node.SetIJKToRASDirectionMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, voxels_kji)
    return node


def save_tiny_checkpoint(path: str) -> str:
    """Save the state dict of a tiny, untrained TAT to ``path`` (.pt) and return the path."""
    import torch
    from monai_tat.networks import TAT

    torch.manual_seed(0)
    network = TAT(dim=8, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1)
    torch.save(network.state_dict(), path)
    return path
