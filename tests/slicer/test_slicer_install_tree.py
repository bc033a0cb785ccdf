"""The extension as the Extensions Manager installs it: module and monai_tat side by side, nothing else.

``slicer_extension/layout_install_tree.py`` lays out the installed ``qt-scripted-modules`` folder
from the same manifest the extension's CMake reads. A fresh Python, started outside the
repository with no checkout on its path, then imports the module's logic from that tree alone
(MRML from ``slicer-core``), makes a sample phantom and restores it with the shipped weights in
the background process, which must import the tree's own ``monai_tat``. A ``monai_tat`` of
another version that gets imported first is refused with one line.

The child Pythons get a ``sitecustomize`` that makes the training-only and command-line-only
packages (tensorboard, ignite, fire, tqdm) unimportable: the Slicer path must not need them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYOUT_SCRIPT = REPO_ROOT / "slicer_extension" / "layout_install_tree.py"
SHIPPED_VERSION = re.search(r'^__version__ = "([^"]+)"', (REPO_ROOT / "monai_tat" / "__init__.py").read_text(), re.M)[1]

SITECUSTOMIZE = '''
"""Test harness of the install-tree test: hide packages the Slicer path must not need; optionally
serve a stray monai_tat before everything else (as an import hook of another install would)."""
import importlib.abc
import importlib.machinery
import os
import sys

HIDDEN = {"tensorboard", "ignite", "fire", "tqdm"}
STRAY = os.environ.get("TEST_STRAY_MONAI_TAT")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the install-tree test)", name=name)
        if STRAY and top == "monai_tat":
            return importlib.machinery.PathFinder.find_spec(name, [STRAY] if path is None else path)
        return None


sys.meta_path.insert(0, _Finder())
'''

RESTORE_FROM_TREE = '''
import json, sys
tree = sys.argv[1]
sys.path.insert(0, tree)  # what Slicer does for a scripted module's folder
import slicer
import MedicalRestoreLib
from MedicalRestoreLib import RestoreLogic, sample_data, volumes
assert MedicalRestoreLib.__file__.startswith(tree), MedicalRestoreLib.__file__
scene = slicer.vtkMRMLScene()
phantom = sample_data.generate_sample_volume(scene, "ct", size=64, slices=2)
before = slicer.util.arrayFromVolume(phantom).copy()
job = RestoreLogic().process(phantom, None, "auto", "tat", "cpu", wait=True)
after = slicer.util.arrayFromVolume(job.output_node)
print(json.dumps({
    "sys_path": sys.path,
    "phantom": [phantom.GetName(), phantom.GetAttribute("DICOM.Modality"), list(before.shape)],
    "output": [job.output_node.GetName(), list(after.shape), float(abs(after - before).mean()),
               bool((after == after).all()), job.task],
    "same_grid": bool((volumes.ijk_to_ras(job.output_node) == volumes.ijk_to_ras(phantom)).all()),
    "monai_tat_in_this_process": "monai_tat" in sys.modules,
    "log": job.log,
}))
'''


def _layout_module():
    spec = importlib.util.spec_from_file_location("layout_install_tree", LAYOUT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory) -> Path:
    """The extension's qt-scripted-modules folder, laid out by the script (run as users would)."""
    tree = tmp_path_factory.mktemp("extension") / "qt-scripted-modules"
    done = subprocess.run([sys.executable, str(LAYOUT_SCRIPT), str(tree)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return tree


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("harness")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


def outside_env(harness: Path, **extra: str) -> dict:
    """A child environment with no checkout on its path: only the test harness's sitecustomize."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(PYTHONPATH=str(harness), OMP_NUM_THREADS="1", **extra)
    return env


def test_manifest_lists_every_module_file_and_what_a_wheel_of_monai_tat_holds():
    layout = _layout_module()
    listed = layout.read_manifest()
    on_disk = layout.files_on_disk()
    for kind in layout.KINDS:
        assert listed[kind] == on_disk[kind], (
            f"install_manifest.txt is out of date for {kind}: run "
            "python slicer_extension/layout_install_tree.py --update-manifest"
        )
    assert "Resources/requirements.txt" in listed["module-resource"]
    assert {"monai_tat/weights/tat_demo.safetensors", "monai_tat/weights/amir_demo.safetensors"} <= set(
        listed["library-resource"]
    )


def test_cmake_reads_the_manifest_as_the_layout_script_does():
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed for this check (.ci/run installs it)"
    done = subprocess.run(
        [cmake, "-P", str(REPO_ROOT / "slicer_extension" / "print_install_manifest.cmake")],
        capture_output=True, text=True, check=True,
    )
    printed = [line.removeprefix("-- ") for line in (done.stdout + done.stderr).splitlines() if line.startswith("-- ")]
    layout = _layout_module()
    expected = [f"{kind} {path}" for kind, paths in layout.read_manifest().items() for path in paths]
    assert printed == expected


def test_install_tree_holds_the_module_and_the_library_side_by_side(install_tree):
    assert (install_tree / "MedicalRestore.py").is_file()
    assert (install_tree / "MedicalRestoreLib" / "restore_volume_script.py").is_file()
    assert (install_tree / "Resources" / "requirements.txt").is_file()
    assert (install_tree / "monai_tat" / "__init__.py").is_file()
    assert (install_tree / "monai_tat" / "weights" / "tat_demo.safetensors").is_file()
    assert not (install_tree / "setup.py").exists() and not (install_tree / "tests").exists()


@pytest.mark.slow
def test_logic_from_the_install_tree_alone_restores_a_sample_with_the_shipped_weights(install_tree, harness, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", RESTORE_FROM_TREE, str(install_tree)],
        capture_output=True, text=True, cwd=tmp_path, env=outside_env(harness), timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # No checkout anywhere on the path; the module came from the tree (asserted in the child).
    assert not any(entry and Path(entry).resolve().is_relative_to(REPO_ROOT) for entry in result["sys_path"])
    assert result["phantom"] == ["PhantomLowDoseCT", "CT", [2, 64, 64]]
    name, shape, mean_change_hu, finite, task = result["output"]
    assert name == "PhantomLowDoseCT restored" and shape == [2, 64, 64] and finite and task == "ct"
    assert mean_change_hu > 1.0  # the shipped weights changed the noisy phantom
    assert result["same_grid"]
    assert result["monai_tat_in_this_process"] is False  # only the background process imports it
    # The background process used the tree's monai_tat.
    assert f"Using monai_tat {SHIPPED_VERSION} from {install_tree / 'monai_tat'}" in result["log"]  # a STATUS line


def test_a_stray_monai_tat_imported_first_is_refused_with_one_line(install_tree, harness, tmp_path):
    stray = tmp_path / "stray"
    (stray / "monai_tat").mkdir(parents=True)
    (stray / "monai_tat" / "__init__.py").write_text('__version__ = "0.0.1"\n')
    script = install_tree / "MedicalRestoreLib" / "restore_volume_script.py"
    done = subprocess.run(
        [sys.executable, str(script), "--input", str(tmp_path / "in.nrrd"), "--output", str(tmp_path / "out.nrrd")],
        capture_output=True, text=True, cwd=tmp_path, env=outside_env(harness, TEST_STRAY_MONAI_TAT=str(stray)),
        timeout=300,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 1 and done.stderr == ""
    assert f"monai_tat 0.0.1 from {(stray / 'monai_tat').resolve()}" in errors[0]
    assert f"monai_tat {SHIPPED_VERSION} this extension ships ({(install_tree / 'monai_tat').resolve()})" in errors[0]
    assert "pip_uninstall('monai-tat')" in errors[0] and "restart Slicer" in errors[0]
    assert not (tmp_path / "out.nrrd").exists()


def test_without_a_stray_copy_the_tree_library_is_the_one_imported(install_tree, harness, tmp_path):
    # The editable install of this checkout (a meta-path finder) must not win over the tree.
    probe = textwrap.dedent(f'''
        import sys
        sys.path.insert(0, {str(install_tree / "MedicalRestoreLib")!r})
        import restore_volume_script as s
        module = s.import_shipped_library(s.library_root())
        print(module.__file__)
    ''')
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                          env=outside_env(harness), timeout=300)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == (install_tree / "monai_tat" / "__init__.py").resolve()


def test_a_wheel_of_monai_tat_holds_exactly_the_library_files_the_extension_ships(tmp_path):
    """setup.py (pip) and the extension's manifest (CMake) ship the same library; pip leaves the
    root CMakeLists.txt and the extension out. Built from a copy so the checkout stays clean."""
    import zipfile

    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md", "LICENSE", "CMakeLists.txt"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "monai_tat", source / "monai_tat", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "slicer_extension", source / "slicer_extension",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"),
         str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("monai_tat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(name for name in names if name.startswith("monai_tat/"))
    listed = _layout_module().read_manifest()
    assert packaged == sorted(listed["library-script"] + listed["library-resource"])
    assert not any("slicer_extension" in name or name.endswith("CMakeLists.txt") for name in names)
    assert f"monai_tat-{SHIPPED_VERSION}.dist-info/METADATA" in names
