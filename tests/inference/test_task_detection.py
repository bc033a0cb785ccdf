"""Task inference: DICOM modality first, then units, then intensity statistics; unsure asks to choose the task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_tat.errors import UserInputError
from monai_tat.inference import infer_task, resolve_task


def _image(values: np.ndarray, **meta) -> MetaTensor:
    return MetaTensor(torch.from_numpy(values.astype(np.float32)), meta=meta)


def test_modality_wins_over_statistics():
    ct_like = np.full((8, 8), -1000.0)
    assert infer_task(_image(ct_like, modality="PT")) == "pet"
    assert infer_task(_image(ct_like, modality="MR")) == "mri"
    assert infer_task(_image(np.zeros((4, 4)), modality="CT")) == "ct"
    assert infer_task(_image(np.zeros((4, 4)), units="SUV")) == "pet"
    with pytest.raises(UserInputError, match="modality US"):
        infer_task(_image(ct_like, modality="US"))


def test_statistics():
    rng = np.random.default_rng(0)
    body = rng.normal(40, 20, (32, 32, 4))
    body[:6] = -1000.0  # air around the patient
    assert infer_task(_image(body)) == "ct"
    mri = np.round(rng.uniform(0, 1200, (16, 16, 4)))
    mri[:4] = 0
    assert infer_task(_image(mri)) == "mri"
    pet = rng.gamma(0.5, 1.0, (16, 16, 4))  # skewed SUV values, maximum above 2
    pet[0, 0, 0] = 12.5
    assert infer_task(_image(pet)) == "pet"


@pytest.mark.parametrize(
    "values",
    [np.random.default_rng(1).uniform(0, 1, (8, 8)),  # MRI scaled to [0, 1]?
     np.random.default_rng(2).uniform(0, 5e4, (8, 8)),  # PET in Bq/mL?
     np.random.default_rng(3).normal(0, 1, (8, 8))],  # standardised image
)
def test_unsure_asks_for_task(values):
    with pytest.raises(UserInputError, match="choose the task") as raised:
        infer_task(_image(values))
    assert raised.value.setting == "task"  # the command line turns it into --task


def test_resolve_task():
    assert resolve_task("CT", None) == "ct"
    assert resolve_task("auto", _image(np.zeros((2, 2)), modality="MR")) == "mri"
    with pytest.raises(UserInputError, match="unknown task"):
        resolve_task("xray", None)


def test_statistics_follow_the_registry_signatures(monkeypatch):
    """The intensity rules are the registry's: a task whose signature changes is detected by the new rule."""
    import dataclasses

    from monai_tat import tasks
    from monai_tat.inference import task_detection

    assert all(spec.signature is not None for spec in tasks.TASK_SPECS.values())
    pet = np.random.default_rng(1).gamma(0.5, 1.0, (16, 16, 2))
    pet[0, 0, 0] = 150.0  # above the PET signature's maximum of 100: no task fits
    with pytest.raises(UserInputError, match="cannot tell"):
        infer_task(_image(pet))
    wider = dataclasses.replace(tasks.get_task("pet").signature, max_range=(2.0, 200.0))
    specs = {name: (dataclasses.replace(spec, signature=wider) if name == "pet" else spec)
             for name, spec in tasks.TASK_SPECS.items()}
    monkeypatch.setattr(task_detection, "TASK_SPECS", specs)
    assert infer_task(_image(pet)) == "pet"


def test_registry_marks_the_kspace_and_suv_tasks():
    from monai_tat.tasks import TASK_SPECS

    assert [name for name, spec in TASK_SPECS.items() if spec.kspace_consistency] == ["mri"]
    assert TASK_SPECS["mri"].kspace_factor == TASK_SPECS["mri"].simulator_defaults["factor"]
    assert TASK_SPECS["ct"].kspace_factor is None
    assert [name for name, spec in TASK_SPECS.items() if spec.dicom_conversion == "suv_factor"] == ["pet"]
