"""Shared figure plumbing of the model scripts: a file-writing backend and saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (model runs write PNG files)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, out: str | Path, name: str, dpi: int = 130) -> Path:
    """Writes ``fig`` to ``out/name`` (creating ``out``), closes it, returns the path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
