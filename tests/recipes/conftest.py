"""The recipe's scripts import each other as plain modules (``python recipes/demo_weights/train.py``
puts their folder first on ``sys.path``); the tests do the same."""

from __future__ import annotations

import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "demo_weights"
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))
