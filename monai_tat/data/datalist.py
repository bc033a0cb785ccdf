"""MONAI decathlon-style datalist files (``training`` / ``validation`` / ``testing`` lists)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai_tat.io import atomic_write

__all__ = ["write_datalist"]


def write_datalist(path: str | Path, datalist: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``datalist`` as indented JSON, atomically; refuse to replace a file unless ``overwrite``.

    Paths inside should be relative to the file's folder, which is what
    ``monai.data.load_decathlon_datalist`` resolves them against.
    """
    text = json.dumps(datalist, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
