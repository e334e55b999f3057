"""Issue 23 item 7: every function of the engine (and of the powers of terms) has a
cyclomatic complexity under 15, as radon counts it (``python -m radon cc -s -n C``).
The one-step path (engine/step.py) is checked where its own work lands."""

from __future__ import annotations

from pathlib import Path

import pytest

radon = pytest.importorskip("radon.complexity")

ROOT = Path(__file__).resolve().parents[1] / "plasticity"
FILES = sorted(p for p in (ROOT / "engine").glob("*.py") if p.name != "step.py") + [
    ROOT / "language" / "_powers.py"
]
LIMIT = 15


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_function_is_under_the_complexity_limit(path):
    blocks = radon.cc_visit(path.read_text())
    found = [(b.fullname, b.complexity) for b in blocks if b.complexity >= LIMIT]
    assert not found, f"{path.name}: cyclomatic complexity >= {LIMIT}: {found}"
