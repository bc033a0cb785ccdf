"""The confidence map is in the restored volume's units for every task: HU, SUV, MRI a.u., and Bq/mL
for a PET given in Bq/mL with its SUV factor (the map scales with the image's units)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_standins import Skewed
from monai.data import MetaTensor

from monai_tat.inference.confidence import restore_with_confidence


def _volume(values: np.ndarray) -> MetaTensor:
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0], dtype=torch.float64))
    return MetaTensor(torch.from_numpy(values.astype(np.float32)), affine=affine)


@pytest.mark.parametrize("task, low, high, units", [("pet", 0.0, 8.0, "SUV"), ("mri", 0.0, 1500.0, "a.u.")])
def test_each_task_map_names_its_units_and_keeps_the_grid(task: str, low: float, high: float, units: str) -> None:
    values = np.random.default_rng(1).uniform(low, high, size=(24, 16, 2))
    values[:4] = low  # background, as real scans have
    volume = _volume(values)
    _, confidence = restore_with_confidence(volume, Skewed(), task=task, device="cpu", kspace_consistency="off")
    assert confidence.meta["confidence"]["units"] == units and confidence.meta["confidence"]["task"] == task
    assert confidence.shape == volume.shape and torch.equal(confidence.affine, volume.affine)
    assert confidence.dtype == torch.float32 and float(confidence.min()) >= 0 and float(confidence.max()) > 0


def test_a_pet_in_bq_per_ml_gets_its_map_in_bq_per_ml() -> None:
    suv = np.random.default_rng(2).uniform(0.0, 8.0, size=(24, 16, 2))
    factor = 2.5e-4  # SUV = Bq/mL x factor
    _, in_suv = restore_with_confidence(_volume(suv), Skewed(), task="pet", device="cpu")
    _, in_bq = restore_with_confidence(_volume(suv / factor), Skewed(), task="pet", device="cpu", suv_factor=factor)
    assert in_suv.meta["confidence"]["units"] == "SUV" and in_bq.meta["confidence"]["units"] == "Bq/mL"
    np.testing.assert_allclose(in_bq.numpy() * factor, in_suv.numpy(), rtol=1e-3, atol=1e-4)
