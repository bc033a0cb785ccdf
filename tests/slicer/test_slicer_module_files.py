"""The extension's files fit together: CMake lists every file, the GUI names every widget it uses.

The Widget and the GUI self-test need a Slicer application; these checks catch the mistakes that
would only show there (a file missing from the installed extension, a typo in a widget name).
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTENSION = REPO_ROOT / "slicer_extension"
MODULE = EXTENSION / "MedicalRestore"


def test_extension_metadata_names_pytorch_and_the_module():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert re.search(r'set\(EXTENSION_DEPENDS\s+"[^"]*\bPyTorch\b', text)
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert re.search(rf'set\(EXTENSION_{field}\s+"[^"]+"\)', text), field
    assert "add_subdirectory(slicer_extension/MedicalRestore)" in text
    assert not (EXTENSION / "CMakeLists.txt").exists()  # one top-level extension project, at the root


def test_module_cmake_installs_the_manifest_module_and_library():
    text = (MODULE / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule(" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    for kind, variable in (
        ("module-script", "MODULE_PYTHON_SCRIPTS"),
        ("module-resource", "MODULE_PYTHON_RESOURCES"),
        ("library-script", "LIBRARY_PYTHON_SCRIPTS"),
        ("library-resource", "LIBRARY_RESOURCES"),
    ):
        assert f"medicalrestore_read_manifest(${{MEDICALRESTORE_MANIFEST}} {kind} {variable})" in text
    # The library is copied from the repository root next to the module, without a subfolder.
    library = re.search(r"ctkMacroCompilePythonScript\((.*?)\)", text, re.S).group(1)
    assert "SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/../.." in library and "NO_INSTALL_SUBDIR" in library
    assert "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in library


def test_module_file_defines_module_widget_logic_and_test():
    tree = ast.parse((MODULE / "MedicalRestore.py").read_text())
    classes = {node.name: [ast.unparse(base) for base in node.bases] for node in tree.body if isinstance(node, ast.ClassDef)}
    assert classes["MedicalRestore"] == ["ScriptedLoadableModule"]
    assert "ScriptedLoadableModuleWidget" in classes["MedicalRestoreWidget"]
    assert classes["MedicalRestoreLogic"] == ["ScriptedLoadableModuleLogic", "RestoreLogic"]
    assert classes["MedicalRestoreTest"] == ["ScriptedLoadableModuleTest"]
    test_methods = [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]
    assert {"test_restore_keeps_geometry", "test_cancel_leaves_no_output", "test_clear_errors"} <= set(test_methods)


def test_every_widget_the_module_uses_is_in_the_ui_file():
    ui = ElementTree.parse(MODULE / "Resources" / "UI" / "MedicalRestore.ui")
    widgets = {widget.get("name"): widget.get("class") for widget in ui.iter("widget")}
    used = set(re.findall(r"self\.ui\.(\w+)", (MODULE / "MedicalRestore.py").read_text()))
    assert used, "the module uses no widgets?"
    assert used <= set(widgets), used - set(widgets)
    assert widgets["inputSelector"] == widgets["outputSelector"] == "qMRMLNodeComboBox"
    assert widgets["applyButton"] == "QPushButton" and widgets["progressBar"] == "QProgressBar"
    # The output selector offers "Create new volume" (None), so a new node appears only at the end.
    output = next(w for w in ui.iter("widget") if w.get("name") == "outputSelector")
    properties = {p.get("name"): "".join(p.itertext()).strip() for p in output.findall("property")}
    assert properties["noneEnabled"] == "true" and properties["noneDisplay"] == "Create new volume"


def test_icon_is_a_small_png():
    with Image.open(MODULE / "Resources" / "Icons" / "MedicalRestore.png") as icon:
        assert icon.format == "PNG" and icon.size == (128, 128)


def test_readme_covers_source_install_and_first_use():
    readme = (EXTENSION / "README.md").read_text()
    for phrase in ("Extension Wizard", "Additional module paths", "PyTorch", "pip_ensure", "Cancel"):
        assert phrase in readme, phrase
