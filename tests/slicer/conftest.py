"""Fixtures for the Slicer extension's tests: real MRML from slicer-core, no Slicer application.

The module's logic package (``slicer_extension/MedicalRestore/MedicalRestoreLib``) is put on
``sys.path`` the way Slicer does for a scripted module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "slicer_extension" / "MedicalRestore"
SCRIPT = MODULE_DIR / "MedicalRestoreLib" / "restore_volume_script.py"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

import slicer  # noqa: E402 - slicer-core, after the path set-up above like the imports below

from MedicalRestoreLib import RestoreLogic, testing  # noqa: E402


def child_env() -> dict:
    """Environment of background processes: one thread each (CI has two cores), repo importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def run_script():
    """``run_script(*arguments)``: the background script run standalone with this Python."""

    def run(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, env=child_env(), timeout=300
        )

    return run


@pytest.fixture
def scene():
    """An empty MRML scene."""
    return slicer.vtkMRMLScene()


@pytest.fixture
def ct_node(scene):
    """A synthetic 32 x 32 x 4 CT volume node (int16 HU) with a flipped, swapped-axes geometry."""
    return testing.add_synthetic_ct(scene)


@pytest.fixture
def logic():
    """The module logic, running the background script with this Python."""
    return RestoreLogic(python_executable=sys.executable, env=child_env())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """State dict of a tiny, untrained TAT saved as a .pt file."""
    return testing.save_tiny_checkpoint(str(tmp_path_factory.mktemp("checkpoint") / "tiny_tat.pt"))


@pytest.fixture
def private_tempdir(tmp_path, monkeypatch) -> Path:
    """Make the logic's temporary folders land in a folder of this test only, to count them."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


def node_state(node) -> dict:
    """Everything about a volume node that restoration must leave alone."""
    from MedicalRestoreLib import volumes

    return {
        "name": node.GetName(),
        "voxels": slicer.util.arrayFromVolume(node).copy(),
        "dtype": str(slicer.util.arrayFromVolume(node).dtype),
        "ijk_to_ras": volumes.ijk_to_ras(node),
        "storage": node.GetStorageNodeID(),
        "display": node.GetDisplayNodeID(),
        "attributes": {name: node.GetAttribute(name) for name in node.GetAttributeNames() or ()},
        "transform": node.GetTransformNodeID(),
    }


@pytest.fixture
def state_of():
    """``state_of(node)``: a comparable snapshot of a volume node (see :func:`node_state`)."""
    return node_state


def assert_same_state(before: dict, after: dict) -> None:
    """Two :func:`node_state` snapshots are equal, voxels bit for bit."""
    import numpy as np

    assert before.keys() == after.keys()
    for key in before:
        if key in ("voxels", "ijk_to_ras"):
            assert np.array_equal(before[key], after[key]), key
        else:
            assert before[key] == after[key], key


@pytest.fixture
def same_state():
    """``same_state(before, after)`` asserts two node snapshots are equal."""
    return assert_same_state
