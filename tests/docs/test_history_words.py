"""What users read describes the present: no work history, issue numbers or developers' machine paths
in the README, docs/, the model card, the bundles' metadata and docs, the Slicer README, or the
package's and the recipe's docstrings and comments."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Words of a lab notebook, not of user documentation.
HISTORY_WORDS = {
    "a numbered stage": re.compile(r"\bstages?[- ]?\d", re.IGNORECASE),
    "a work session": re.compile(r"\bsessions?\b", re.IGNORECASE),
    "an issue number": re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE),
    "a developer's machine path": re.compile(r"/work/|/root/|/home/\w+/"),
}


def _documents() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "slicer_extension" / "README.md"]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "recipes").rglob("*.md"))
    for bundle in sorted((ROOT / "bundles").iterdir()):
        files += [bundle / "configs" / "metadata.json", *sorted((bundle / "docs").glob("*"))]
    return [f for f in files if f.is_file()]


def _sources() -> list[Path]:
    return sorted((ROOT / "monai_tat").rglob("*.py")) + sorted((ROOT / "recipes").rglob("*.py"))


def _prose_of_source(path: Path) -> str:
    """The docstrings and comments of a Python file (code may name an ONNX Runtime session)."""
    text = path.read_text(encoding="utf-8")
    parts = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                parts.append(doc)
    parts += [tok.string for tok in tokenize.generate_tokens(io.StringIO(text).readline) if tok.type == tokenize.COMMENT]
    return "\n".join(parts)


def _hits(text: str) -> list[str]:
    return [f"{what}: {match.group(0)!r}" for what, pattern in HISTORY_WORDS.items() for match in pattern.finditer(text)]


def test_the_lists_cover_what_users_read():
    names = {p.relative_to(ROOT).as_posix() for p in _documents()}
    assert {"README.md", "recipes/demo_weights/MODEL_CARD.md", "bundles/tat_allinone/docs/README.md",
            "bundles/amir_allinone/configs/metadata.json", "slicer_extension/README.md"} <= names
    assert len(_sources()) > 50


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documents_carry_no_history_words(path: Path):
    assert _hits(path.read_text(encoding="utf-8")) == []


def test_docstrings_and_comments_carry_no_history_words():
    found = {p.relative_to(ROOT).as_posix(): hits for p in _sources() if (hits := _hits(_prose_of_source(p)))}
    assert found == {}


def test_the_patterns_catch_what_they_are_for():
    for text in ("stage-7 weights", "Stage 3", "this session", "(issue 2)", "Issue 13's goal", "/work/cache/x", "/root/.cache"):
        assert _hits(text), text
    for text in ("the staged copy", "onnxruntime.InferenceSession", "tissue 12"):
        assert not _hits(text), text
