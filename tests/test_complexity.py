"""Issue 23 item 7: every function of the package has a cyclomatic complexity under 15,
as radon counts it (``python -m radon cc -s -n C plasticity``; radon is in the ``dev``
extra), and no module is over 500 lines (the charter's ~400–500)."""

from __future__ import annotations

from pathlib import Path

import pytest

radon = pytest.importorskip("radon.complexity")

ROOT = Path(__file__).resolve().parents[1] / "plasticity"
FILES = sorted(ROOT.rglob("*.py"))
LIMIT = 15
MAX_LINES = 500


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_function_is_under_the_complexity_limit(path):
    blocks = radon.cc_visit(path.read_text())
    found = [(b.fullname, b.complexity) for b in blocks if b.complexity >= LIMIT]
    assert not found, f"{path.name}: cyclomatic complexity >= {LIMIT}: {found}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_under_the_line_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name}: {lines} lines (split it: at most {MAX_LINES})"
