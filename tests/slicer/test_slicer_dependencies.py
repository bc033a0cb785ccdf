"""First use: detecting missing packages and the installation plan, without any GUI."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from MedicalRestoreLib import RestoreInputError, dependencies
from MedicalRestoreLib.dependencies import PIP_ENSURE, PIP_INSTALL, PYTORCH_EXTENSION, InstallStep


def finder(*present):
    return lambda name: object() if name in present else None


def test_missing_modules_are_found_in_install_order():
    assert dependencies.missing_modules(finder("torch", "monai_tat")) == []
    assert dependencies.missing_modules(finder("torch")) == ["monai_tat"]
    assert dependencies.missing_modules(finder()) == ["torch", "monai_tat"]
    # In this environment both are installed.
    assert dependencies.missing_modules() == []


def test_torch_comes_from_the_pytorch_extension_when_it_is_there():
    plan = dependencies.build_install_plan(["torch", "monai_tat"], (5, 8), has_pytorch_extension=True)
    assert plan == [
        InstallStep("torch", PYTORCH_EXTENSION, "torch>=2.1"),
        InstallStep("monai_tat", PIP_INSTALL, "monai-tat"),
    ]


def test_slicer_5_12_uses_pip_ensure():
    plan = dependencies.build_install_plan(["torch", "monai_tat"], (5, 12), has_pytorch_extension=False)
    assert [(step.module, step.method) for step in plan] == [("torch", PIP_ENSURE), ("monai_tat", PIP_ENSURE)]


def test_old_slicer_without_pytorch_extension_asks_for_it():
    with pytest.raises(RestoreInputError, match="install the 'PyTorch' extension"):
        dependencies.build_install_plan(["torch"], (5, 10), has_pytorch_extension=False)
    # Only monai_tat missing needs no PyTorch extension.
    assert dependencies.build_install_plan(["monai_tat"], (5, 10), False) == [
        InstallStep("monai_tat", PIP_INSTALL, "monai-tat")
    ]


def test_a_source_checkout_is_installed_from_its_folder(tmp_path):
    (tmp_path / "monai_tat").mkdir()
    (tmp_path / "monai_tat" / "__init__.py").write_text("")
    (tmp_path / "setup.py").write_text("")
    module_dir = tmp_path / "slicer_extension" / "MedicalRestore"
    module_dir.mkdir(parents=True)
    assert dependencies.source_checkout(module_dir) == tmp_path

    new = dependencies.build_install_plan(["monai_tat"], (5, 12), False, source_root=tmp_path)
    assert new[0].requirement == f"monai-tat @ {tmp_path.resolve().as_uri()}"
    old = dependencies.build_install_plan(["monai_tat"], (5, 6), False, source_root=tmp_path)
    assert old[0].requirement == str(tmp_path)


def test_this_repository_is_found_as_the_source_checkout():
    module_dir = Path(__file__).resolve().parents[2] / "slicer_extension" / "MedicalRestore"
    assert dependencies.source_checkout(module_dir) == module_dir.parents[1]
    assert dependencies.source_checkout(Path("/")) is None


def test_nothing_is_installed_when_the_user_declines():
    calls = []
    fake_slicer = SimpleNamespace(
        packaging=SimpleNamespace(pip_ensure=lambda *a, **k: calls.append(("ensure", a, k))),
        util=SimpleNamespace(pip_install=lambda *a, **k: calls.append(("install", a, k))),
    )
    plan = [InstallStep("monai_tat", PIP_ENSURE, "monai-tat")]
    questions = []

    assert dependencies.install(plan, lambda text: questions.append(text) or False, fake_slicer) is False
    assert calls == []
    assert "monai_tat: monai-tat" in questions[0] and "Install them now?" in questions[0]


def test_confirmed_plan_runs_each_step_once():
    calls = []
    fake_slicer = SimpleNamespace(
        packaging=SimpleNamespace(pip_ensure=lambda *a, **k: calls.append(("ensure", a, k))),
        util=SimpleNamespace(pip_install=lambda *a, **k: calls.append(("install", a, k))),
    )
    plan = [InstallStep("monai_tat", PIP_ENSURE, "monai-tat")]
    assert dependencies.install(plan, lambda text: True, fake_slicer) is True
    assert len(calls) == 1
    kind, (requirements,), options = calls[0]
    assert kind == "ensure" and [str(r) for r in requirements] == ["monai-tat"]
    assert options == {"prompt_install": False, "requester": "MedicalRestore"}  # the user was asked once, above

    calls.clear()
    assert dependencies.install([InstallStep("monai_tat", PIP_INSTALL, "/src/monai-tat")], lambda text: True, fake_slicer)
    assert calls == [("install", (["/src/monai-tat"],), {})]


def test_pip_ensure_step_falls_back_to_pip_install_where_slicer_lacks_it():
    calls = []
    old_slicer = SimpleNamespace(util=SimpleNamespace(pip_install=lambda *a, **k: calls.append(a)))
    plan = [InstallStep("monai_tat", PIP_ENSURE, "monai-tat")]
    assert dependencies.install(plan, lambda text: True, old_slicer) is True
    assert calls == [(["monai-tat"],)]


def test_empty_plan_asks_nothing():
    assert dependencies.install([], lambda text: pytest.fail("asked without need"), None) is True
