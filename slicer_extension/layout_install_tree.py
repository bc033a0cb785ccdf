"""Lay out the MedicalRestore extension's installed files, as Slicer's CMake install rules place them.

Both this script and the extension's CMake (``MedicalRestore/CMakeLists.txt``, through
``InstallManifest.cmake``) read the one list of installed files, ``install_manifest.txt``, so the
tree laid out here is the tree an Extensions Manager install puts under the extension's
``lib/Slicer-X.Y/qt-scripted-modules/`` folder:

- ``module-script`` / ``module-resource`` lines: paths relative to ``slicer_extension/MedicalRestore``,
  installed at the same relative path (what ``slicerMacroBuildScriptedModule`` does);
- ``library-script`` / ``library-resource`` lines: paths relative to the repository root (the
  ``monai_tat`` package and its shipped weights), installed at the same relative path, beside the
  module (what ``ctkMacroCompilePythonScript`` with ``SOURCE_DIR`` = the repository root does).

Usage::

    python slicer_extension/layout_install_tree.py DESTINATION     # lay out the tree
    python slicer_extension/layout_install_tree.py --update-manifest  # rewrite the manifest from disk
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Tuple

EXTENSION_DIR = Path(__file__).resolve().parent
REPO_ROOT = EXTENSION_DIR.parent
MODULE_DIR = EXTENSION_DIR / "MedicalRestore"
MANIFEST = EXTENSION_DIR / "install_manifest.txt"

MODULE_KINDS = ("module-script", "module-resource")
LIBRARY_KINDS = ("library-script", "library-resource")
KINDS = MODULE_KINDS + LIBRARY_KINDS

MANIFEST_HEADER = """\
# Files the MedicalRestore extension installs, one "<kind> <path>" a line; read by the extension's
# CMake (InstallManifest.cmake) and by layout_install_tree.py, so both install the same files.
# module-script, module-resource: relative to slicer_extension/MedicalRestore.
# library-script, library-resource: relative to the repository root (monai_tat and its weights).
# Regenerate with: python slicer_extension/layout_install_tree.py --update-manifest
"""

# What setup.py's package_data ships besides the Python files (the demo weights and their metrics).
LIBRARY_RESOURCE_PATTERNS = ("monai_tat/weights/*.safetensors", "monai_tat/weights/*.json")


def read_manifest(path: Path = MANIFEST) -> Dict[str, List[str]]:
    """The manifest's paths by kind, in file order; comments and blank lines are skipped."""
    entries: Dict[str, List[str]] = {kind: [] for kind in KINDS}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        kind, _, relative = text.partition(" ")
        if kind not in entries or not relative.strip():
            raise ValueError(f"{path}:{number}: expected '<kind> <path>' with a kind of {KINDS}, got {line!r}")
        entries[kind].append(relative.strip())
    return entries


def source_root(kind: str) -> Path:
    """The folder a manifest path of ``kind`` is relative to."""
    return MODULE_DIR if kind in MODULE_KINDS else REPO_ROOT


def installed_files(manifest: Path = MANIFEST) -> List[Tuple[Path, str]]:
    """``(source file, path inside the installed scripted-modules folder)`` for every manifest entry."""
    files = []
    for kind, paths in read_manifest(manifest).items():
        for relative in paths:
            files.append((source_root(kind) / relative, relative))
    return files


def lay_out(destination: Path, manifest: Path = MANIFEST) -> Path:
    """Copy every installed file into ``destination`` (the extension's ``qt-scripted-modules`` folder).

    Raises:
        FileNotFoundError: a manifest entry has no file (the CMake configure step would fail too).
        FileExistsError: ``destination`` exists and is not empty.
    """
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise FileExistsError(f"{destination} is not empty; choose a new folder")
    for source, relative in installed_files(manifest):
        if not source.is_file():
            raise FileNotFoundError(f"{source} is listed in {manifest.name} but does not exist")
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def files_on_disk() -> Dict[str, List[str]]:
    """What the manifest should list: every module file, and what a wheel of monai_tat holds."""
    module_scripts = sorted(p.relative_to(MODULE_DIR).as_posix() for p in MODULE_DIR.rglob("*.py"))
    module_resources = sorted(
        p.relative_to(MODULE_DIR).as_posix()
        for p in (MODULE_DIR / "Resources").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    library_scripts = sorted(
        p.relative_to(REPO_ROOT).as_posix()
        for p in (REPO_ROOT / "monai_tat").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    library_resources = sorted(
        p.relative_to(REPO_ROOT).as_posix() for pattern in LIBRARY_RESOURCE_PATTERNS for p in REPO_ROOT.glob(pattern)
    )
    return {
        "module-script": module_scripts,
        "module-resource": module_resources,
        "library-script": library_scripts,
        "library-resource": library_resources,
    }


def write_manifest(path: Path = MANIFEST) -> None:
    lines = [f"{kind} {relative}" for kind, paths in files_on_disk().items() for relative in paths]
    path.write_text(MANIFEST_HEADER + "\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", nargs="?", help="empty folder to lay the installed files out in")
    parser.add_argument("--update-manifest", action="store_true", help="rewrite install_manifest.txt from disk")
    args = parser.parse_args(argv)
    if args.update_manifest:
        write_manifest()
        print(f"wrote {MANIFEST}")
        return 0
    if not args.destination:
        parser.error("give a destination folder or --update-manifest")
    try:
        lay_out(Path(args.destination))
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"laid out {len(installed_files())} files in {args.destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
