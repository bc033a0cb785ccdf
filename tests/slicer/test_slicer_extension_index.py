"""The extension's description passes the Extensions Index's checks that can run offline.

The Slicer Extensions Index validates a submitted ``<ExtensionName>.json`` (here
``slicer_extension/MONAITAT.json``, the file to submit) with its ``check_description_files``
script: the JSON schema of catalog entries, a known category, the ``scm_url`` syntax, the
repository name, the top-level ``CMakeLists.txt`` (project name = extension name, icon and
screenshot URLs that are images), and a license file. The same rules are written here; where the
index downloads (schema, images) the test reads this repository's files instead.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = REPO_ROOT / "slicer_extension" / "MONAITAT.json"
RAW_PREFIX = "https://raw.githubusercontent.com/monai-tat/monai-tat/main/"

#: The catalog-entry schema (version 1.0.2) as its rules read: required keys, their types, nothing else.
CATALOG_ENTRY_SCHEMA = {
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
#: Categories of the index this extension could use (an excerpt of the accepted list).
KNOWN_CATEGORIES = {"Filtering", "Nuclear Medicine", "Quantification", "Segmentation", "Utilities"}
#: The repository names the index lets through without "Slicer" in them hold this one once the
#: submission asks for it (see slicer_extension/README.md, "Extensions Index").
REPOSITORY_NAME_EXCEPTIONS_REQUESTED = {"monai-tat"}


def description() -> dict:
    return json.loads(DESCRIPTION.read_text())


def cmake_value(text: str, variable: str) -> str:
    # As strict as the index's patterns: a quoted, non-empty value and the closing parenthesis.
    match = re.search(rf'set\s*\({variable}\s*"([^"]+)"[ ]*\)', text, re.I)
    assert match, f"{variable} is not set in CMakeLists.txt"
    return match.group(1).strip()


def repository_name(scm_url: str) -> str:
    return Path(urllib.parse.urlsplit(scm_url).path).stem


def repository_name_problem(scm_url: str, exceptions=frozenset()) -> str:
    """The index's repository-name rule: the name holds "slicer", or is a listed exception."""
    name = repository_name(scm_url)
    if name in exceptions or "slicer" in name.lower():
        return ""
    return f"extension repository name is '{name}'; consider 'Slicer{name}'"


def test_description_file_matches_the_catalog_entry_schema():
    metadata = description()
    jsonschema.validate(metadata, CATALOG_ENTRY_SCHEMA)
    assert re.fullmatch(
        r"https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
        r"slicer-extension-catalog-entry-schema-v1\.0\.\d+\.json#?",
        metadata["$schema"],
    )
    with pytest.raises(jsonschema.ValidationError):  # the schema here does reject a wrong entry
        jsonschema.validate({**metadata, "scmurl": metadata["scm_url"]}, CATALOG_ENTRY_SCHEMA)


def test_category_and_scm_url():
    metadata = description()
    assert metadata["category"] in KNOWN_CATEGORIES
    assert "://" in metadata["scm_url"]
    assert urllib.parse.urlsplit(metadata["scm_url"]).scheme in ("git", "https")


def test_repository_name_needs_the_documented_exception():
    scm_url = description()["scm_url"]
    # Without an exception the index's rule fails for this repository: the README says how the
    # submission handles it.
    assert "monai-tat" in repository_name_problem(scm_url)
    assert repository_name_problem(scm_url, REPOSITORY_NAME_EXCEPTIONS_REQUESTED) == ""
    readme = (REPO_ROOT / "slicer_extension" / "README.md").read_text()
    assert "REPOSITORY_NAME_CHECK_EXCEPTIONS" in readme and "SlicerMONAITAT" in readme


def test_top_level_cmake_names_the_extension_and_points_at_real_images():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    project = re.findall(r"project\s*\(\s*([^\s\)]+)", text, re.I)
    assert project and project[0].strip("\"'") == DESCRIPTION.stem
    icon = cmake_value(text, "EXTENSION_ICONURL")
    screenshots = cmake_value(text, "EXTENSION_SCREENSHOTURLS").split()
    assert screenshots
    for url in [icon, *screenshots]:
        assert url.startswith(RAW_PREFIX), url  # a file of this repository on its main branch
        path = REPO_ROOT / url[len(RAW_PREFIX):]
        with Image.open(path) as image:
            assert image.format == "PNG", url
        assert path.stat().st_size < 150_000, url  # small files in the repository
    homepage = cmake_value(text, "EXTENSION_HOMEPAGE")
    prefix = "https://github.com/monai-tat/monai-tat/blob/main/"
    assert homepage.startswith(prefix) and (REPO_ROOT / homepage[len(prefix):]).is_file()
    # The URLs are marked as the ones to confirm at publication.
    assert "confirm the repository address when the extension is published" in text


def test_build_dependencies_are_the_extension_dependencies_and_a_license_is_there():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    assert description()["build_dependencies"] == cmake_value(text, "EXTENSION_DEPENDS").split()
    assert description()["category"] == cmake_value(text, "EXTENSION_CATEGORY")
    assert (REPO_ROOT / "LICENSE").is_file()
