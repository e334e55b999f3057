"""Splices the benchmark tables (``benchmarks/results/*.md``) into README.md.

Each table sits in the README between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
``make bench`` runs this after the benchmarks, so the README always shows the last run.

    python benchmarks/readme.py [--readme README.md] [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("stdp_dense", "stdp_rules", "stdp_conv", "distributed_scaling")


def save_results(out: Path | None, name: str, text: str, rows: list[dict]) -> None:
    """Writes a benchmark's table (``NAME.md``, what :func:`splice` reads) and its rows
    (``NAME.json``) into ``out`` (nothing if ``None``)."""
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2))


def splice(readme: str, name: str, table: str) -> str:
    """``readme`` with the block between the ``name`` markers replaced by ``table``."""
    pattern = re.compile(
        rf"(<!-- bench:{re.escape(name)} -->\n).*?(<!-- /bench:{re.escape(name)} -->)", re.S
    )
    if not pattern.search(readme):
        raise ValueError(f"README has no <!-- bench:{name} --> ... <!-- /bench:{name} --> block")
    return pattern.sub(lambda m: m.group(1) + table.rstrip("\n") + "\n" + m.group(2), readme)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    for name in NAMES:
        table = args.results / f"{name}.md"
        if table.exists():
            text = splice(text, name, table.read_text())
            print(f"README: {name} from {table}")
        else:
            print(f"README: {name} kept (no {table})")
    args.readme.write_text(text)


if __name__ == "__main__":
    main()
