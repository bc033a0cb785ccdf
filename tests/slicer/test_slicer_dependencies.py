"""First use: detecting missing third-party packages and the installation plan, without any GUI.

monai_tat ships inside the extension; the plan installs only what it needs from others, and never
monai-tat itself nor what only training uses (tensorboard).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from MedicalRestoreLib import RestoreInputError, dependencies
from MedicalRestoreLib.dependencies import PIP_ENSURE, PIP_INSTALL, PYTORCH_EXTENSION, InstallStep

REPO_ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO_ROOT / "slicer_extension" / "MedicalRestore" / "Resources" / "requirements.txt"

#: setup.py's install_requires that Slicer's first use leaves out on purpose, and why.
NOT_INSTALLED_IN_SLICER = {
    "torch": "the PyTorch extension installs the build that fits the GPU",
    "numpy": "Slicer ships its own",
    "SimpleITK": "Slicer ships its own",
    "tqdm": "command line only",
    "pillow": "command line only",
    "fire": "python -m monai.bundle only",
    "pytorch-ignite": "bundle runs only",
}


def finder(*present):
    return lambda name: object() if name in present else None


def versions(**installed):
    def version_of(name):
        key = name.lower().replace("-", "_")
        if key not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[key]

    return version_of


def setup_requirements(extra: str = None) -> list:
    """install_requires (or an extra) of setup.py, read from its source."""
    text = (REPO_ROOT / "setup.py").read_text()
    if extra is None:
        block = re.search(r"install_requires=\[(.*?)\]", text, re.S).group(1)
        return re.findall(r'"([^"]+)"', block)
    return re.findall(r'"([^"]+)"', re.search(r"TRAIN_REQUIRES = \[(.*?)\]", text, re.S).group(1))


def test_requirements_file_is_setup_py_without_what_slicer_gets_elsewhere():
    lines = dependencies.read_requirements(REQUIREMENTS)
    install_requires = setup_requirements()
    # Same version ranges as the library declares.
    assert set(lines) <= set(install_requires), set(lines) - set(install_requires)
    left_out = {dependencies.requirement_name(line) for line in set(install_requires) - set(lines)}
    assert left_out == set(NOT_INSTALLED_IN_SLICER)
    assert dependencies.read_requirements() == lines  # the module reads this file by default


def test_first_use_plan_lists_no_monai_tat_and_no_tensorboard():
    # Nothing installed at all: the plan is torch, then every line of requirements.txt.
    missing = dependencies.missing_packages(find_spec=finder(), version_of=versions())
    assert missing[0] == "torch" and missing[1:] == dependencies.read_requirements()
    for slicer_version, pytorch_extension in (((5, 8), True), ((5, 12), False)):
        plan = dependencies.build_install_plan(missing, slicer_version, pytorch_extension)
        text = dependencies.confirmation_text(plan).lower()
        assert "monai-tat" not in text and "monai_tat" not in text
        assert "tensorboard" not in text
        assert [step.module for step in plan][:2] == ["torch", "monai"]
    assert "tensorboard>=2.12" in setup_requirements("train")
    assert not any(line.startswith("tensorboard") for line in setup_requirements())


def test_missing_packages_checks_versions_as_pip_would():
    lines = ["monai>=1.4", "pydicom>=2.4"]
    assert dependencies.missing_packages(lines, finder("torch"), versions(monai="1.6.1", pydicom="3.0")) == []
    assert dependencies.missing_packages(lines, finder("torch"), versions(monai="1.3.2", pydicom="3.0")) == [
        "monai>=1.4"
    ]
    assert dependencies.missing_packages(lines, finder(), versions(monai="1.6.1")) == ["torch", "pydicom>=2.4"]
    # In this environment everything is installed.
    assert dependencies.missing_packages() == []


def test_torch_comes_from_the_pytorch_extension_when_it_is_there():
    plan = dependencies.build_install_plan(["torch", "monai>=1.4"], (5, 8), has_pytorch_extension=True)
    assert plan == [
        InstallStep("torch", PYTORCH_EXTENSION, "torch>=2.1"),
        InstallStep("monai", PIP_INSTALL, "monai>=1.4"),
    ]


def test_slicer_5_12_uses_pip_ensure():
    plan = dependencies.build_install_plan(["torch", "monai>=1.4"], (5, 12), has_pytorch_extension=False)
    assert [(step.module, step.method) for step in plan] == [("torch", PIP_ENSURE), ("monai", PIP_ENSURE)]


def test_old_slicer_without_pytorch_extension_asks_for_it():
    with pytest.raises(RestoreInputError, match="install the 'PyTorch' extension"):
        dependencies.build_install_plan(["torch"], (5, 10), has_pytorch_extension=False)
    # Only other packages missing needs no PyTorch extension.
    assert dependencies.build_install_plan(["pydicom>=2.4"], (5, 10), False) == [
        InstallStep("pydicom", PIP_INSTALL, "pydicom>=2.4")
    ]


def test_nothing_is_installed_when_the_user_declines():
    calls = []
    fake_slicer = SimpleNamespace(
        packaging=SimpleNamespace(pip_ensure=lambda *a, **k: calls.append(("ensure", a, k))),
        util=SimpleNamespace(pip_install=lambda *a, **k: calls.append(("install", a, k))),
    )
    plan = [InstallStep("monai", PIP_ENSURE, "monai>=1.4")]
    questions = []

    assert dependencies.install(plan, lambda text: questions.append(text) or False, fake_slicer) is False
    assert calls == []
    assert "monai: monai>=1.4" in questions[0] and "Install them now?" in questions[0]


def test_confirmed_plan_installs_torch_first_then_the_rest_in_one_call():
    calls = []
    fake_slicer = SimpleNamespace(
        packaging=SimpleNamespace(pip_ensure=lambda *a, **k: calls.append(("ensure", a, k))),
        util=SimpleNamespace(pip_install=lambda *a, **k: calls.append(("install", a, k))),
    )
    plan = dependencies.build_install_plan(["torch", "monai>=1.4", "pydicom>=2.4"], (5, 12), False)
    assert dependencies.install(plan, lambda text: True, fake_slicer) is True
    assert [[str(r) for r in call[1][0]] for call in calls] == [["torch>=2.1"], ["monai>=1.4", "pydicom>=2.4"]]
    assert all(call[2] == {"prompt_install": False, "requester": "MedicalRestore"} for call in calls)

    calls.clear()
    assert dependencies.install([InstallStep("monai", PIP_INSTALL, "monai>=1.4")], lambda text: True, fake_slicer)
    assert calls == [("install", (["monai>=1.4"],), {})]


def test_pip_ensure_step_falls_back_to_pip_install_where_slicer_lacks_it():
    calls = []
    old_slicer = SimpleNamespace(util=SimpleNamespace(pip_install=lambda *a, **k: calls.append(a)))
    plan = [InstallStep("monai", PIP_ENSURE, "monai>=1.4")]
    assert dependencies.install(plan, lambda text: True, old_slicer) is True
    assert calls == [(["monai>=1.4"],)]


def test_empty_plan_asks_nothing():
    assert dependencies.install([], lambda text: pytest.fail("asked without need"), None) is True
