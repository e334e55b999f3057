"""The README's code runs as written; the demo produces its result and its PNGs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_python_blocks_run(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(
        compile(readme_blocks()[index], f"README.md[block {index}]", "exec"),
        {"__name__": "__readme__"},
    )


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_is_a_short_user_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count("\n") <= 250
    assert "pip install snntorch-plasticity" in text and "import plasticity" in text
    assert "make notebook" in text and "pl.Rule(" in text
    # pointers to the user guide's full text (checkpoints, hook pairing, bad spikes)
    for page in ("guide/checkpoints.md", "guide/attaching.md#what-the-hooks-pair-with-what",
                 "guide/attaching.md#bad-spikes"):
        assert f"docs/{page}" in text
    # every relative link and image of the README points at a file of the repository
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)|src=\"([^\"]+)\"", text):
        path = next(t for t in target if t)
        assert (ROOT / path).exists(), path


def test_demo_learns_correlations_and_writes_pngs(tmp_path):
    from models import poisson_demo

    r = poisson_demo.run(tmp_path, duration_s=15.0, seed=3)
    nc = r["n_correlated"]
    w = r["weights"]
    assert w.shape == (151, 100)
    assert torch.all((w >= 0) & (w <= 1))
    # correlated inputs are potentiated relative to independent ones (soft bounds: inside the range)
    assert r["mean_correlated"] > r["mean_independent"] + 0.05
    assert r["frac_at_bounds"] < 0.05
    assert w[-1, :nc].mean() > w[0, :nc].mean() + 0.05
    names = sorted(p.name for p in r["paths"])
    assert names == ["weight_histogram.png", "weight_trajectories.png"]
    for p in r["paths"]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_demo_cli(tmp_path, capsys):
    from models import poisson_demo

    poisson_demo.main(["--out", str(tmp_path), "--duration", "2"])
    out = capsys.readouterr().out
    assert "mean weight, correlated inputs" in out and "weight_trajectories.png" in out
    assert (tmp_path / "weight_histogram.png").exists()


def benchmark(name: str):
    """A module of benchmarks/ (they import each other by plain name)."""
    import importlib
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_benchmark_script_runs_at_a_tiny_size(tmp_path):
    stdp_dense = benchmark("stdp_dense")
    rows = stdp_dense.main(
        [
            "--n-in",
            "32",
            "--n-out",
            "8",
            "--batch",
            "2",
            "--steps",
            "20",
            "--repeats",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert len(rows) == 1 and rows[0]["n_out"] == 8
    for key in ("forward", "ours (hooks)", "ours (observe)", "snntorch", "per-step"):
        assert rows[0][key] > 0
    assert rows[0]["bf16 error"]["float32"] < 1e-5 < rows[0]["bf16 error"]["bf16"] < 0.1
    memory = rows[0]["memory"]
    assert memory["weight"] == 8 * 32 * 4 and memory["ours (kernel)"] > 0
    text = (tmp_path / "stdp_dense.md").read_text()
    assert "Peak memory" in text and text.count("\n") >= 12


def test_rules_benchmark_script_runs_at_a_tiny_size(tmp_path):
    stdp_rules = benchmark("stdp_rules")
    argv = ["--n-in", "40", "--n-out", "10", "--steps", "30", "--batch", "2", "--repeats", "1"]
    argv += ["--rate", "0.1"]
    rows = stdp_rules.main([*argv, "--out", str(tmp_path)])
    assert [r["rule"] for r in rows] == ["pair", "triplet", "mstdpet"]
    for r in rows:
        assert r["ours (kernel)"] > 0 and r["per-step"] > 0 and r["memory"]["ours (kernel)"] > 0
    assert (tmp_path / "stdp_rules.md").read_text().count("| mstdpet |") == 1


def test_eprop_benchmark_runs_at_a_tiny_size_and_its_plain_loop_equals_eprop(tmp_path):
    """benchmarks/eprop.py: its plain per-step loop (eligibility kept per synapse) and
    ``pl.EProp`` give the same three Δw (float32 and float64; ``check`` raises otherwise)."""
    eprop = benchmark("eprop")
    rows = eprop.main(["--steps", "20", "--batch", "2", "--repeats", "1", "--out", str(tmp_path)])
    assert [r["batch"] for r in rows] == [2]
    diff = rows[0]["relative_difference"]
    assert diff["float32"] < 1e-5 and diff["float64"] < 1e-11
    assert rows[0]["ours_ms"] > 0 and rows[0]["plain_ms"] > 0 and rows[0]["aten_ops_per_step"]["ours"] > 0
    assert (tmp_path / "eprop.md").read_text().count("| 100→100→1 | 2 | 20 |") == 1


def test_benchmarks_readme_is_generated_from_the_tables(tmp_path):
    readme = benchmark("readme")
    (tmp_path / "stdp_conv.md").write_text("Conv2d, T = 5\n\n| B | ours |\n|---|---|\n| 1 | 1.2 |\n")
    text = readme.render(tmp_path)
    assert text.startswith("# Benchmarks\n")
    assert "## Conv2d (`benchmarks/stdp_conv.py`)" in text and "| 1 | 1.2 |" in text
    assert "Dense pair STDP" not in text  # no table, no section
    # the committed file is what the committed tables give (make bench rewrites both)
    committed = (ROOT / "benchmarks" / "README.md").read_text()
    assert committed == readme.render(ROOT / "benchmarks" / "results")
    for name in readme.NAMES:
        if (ROOT / "benchmarks" / "results" / f"{name}.md").exists():
            assert readme.SECTIONS[name][0] in committed
    # the user README links the tables instead of holding them
    assert "benchmarks/README.md" in (ROOT / "README.md").read_text()
    assert "<!-- bench:" not in (ROOT / "README.md").read_text()


def test_conv_benchmark_script_runs_at_a_tiny_size(tmp_path):
    stdp_conv = benchmark("stdp_conv")
    rows = stdp_conv.main(
        ["--batch", "1", "--steps", "5", "--repeats", "1", "--out", str(tmp_path)]
    )
    assert rows[0]["ours (kernel)"] > 0 and rows[0]["snntorch"] > 0
    assert (tmp_path / "stdp_conv.md").exists()


def test_version_is_single_sourced_and_in_the_changelog():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    import plasticity

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["name"] == "snntorch-plasticity"
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "plasticity.__version__"}
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["plasticity", "plasticity.*"]
    assert (ROOT / "plasticity" / "py.typed").exists()
    assert f"## {plasticity.__version__}" in (ROOT / "CHANGELOG.md").read_text()
