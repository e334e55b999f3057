"""The package as users get it: ``python -m build`` makes an sdist and a wheel; the wheel
holds the library only (no top-level ``models``), with ``py.typed`` and the version of
``plasticity.__version__``; installed into a fresh virtualenv it runs the README's example.

The fresh virtualenv gets the wheel and nothing else (``pip install --no-deps``): installing
torch into it would download hundreds of MB per test run. Its dependencies (torch, snntorch,
matplotlib, tqdm) come from this interpreter's site-packages through ``PYTHONPATH``, which
does not process ``.pth`` files, so an editable install of the checkout there stays
invisible; the test asserts that ``plasticity`` is imported from the fresh environment and
that ``models`` cannot be imported at all. The wheel is built from the sdist (so the sdist
is complete); the build runs ``--no-isolation`` (this
environment's setuptools) so that it needs no download either.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

import plasticity

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    pytest.importorskip("build", reason="the dev extra's `build` is not installed")
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation",  # the sdist, then the wheel from it
         "--outdir", str(out), str(ROOT)],  # fmt: skip
        capture_output=True, text=True, timeout=600, cwd=out,  # fmt: skip
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


def test_wheel_holds_the_library_only(dist):
    version = plasticity.__version__
    (wheel,) = dist.glob("*.whl")
    assert wheel.name.startswith(f"snntorch_plasticity-{version}-py3-none-any")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"plasticity", f"snntorch_plasticity-{version}.dist-info"}, tops
    assert "plasticity/py.typed" in names
    assert "plasticity/rules/stdp.py" in names and "plasticity/functional/traces.py" in names
    meta = zipfile.ZipFile(wheel).read(f"snntorch_plasticity-{version}.dist-info/METADATA")
    meta = meta.decode()
    assert "Name: snntorch-plasticity" in meta and f"Version: {version}" in meta
    assert "Requires-Dist: torch" in meta and "Requires-Dist: snntorch" in meta
    (sdist,) = dist.glob("*.tar.gz")
    members = tarfile.open(sdist).getnames()
    assert f"snntorch_plasticity-{version}/pyproject.toml" in members
    assert f"snntorch_plasticity-{version}/plasticity/py.typed" in members


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## In 20 lines", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_wheel_installs_and_runs_the_readme_example(dist, tmp_path):
    (wheel,) = dist.glob("*.whl")
    venv = tmp_path / "venv"
    # nothing of the checkout on the path (the build leaves its egg-info there, which pip
    # would take for an installed snntorch-plasticity)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300, env=clean)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300, env=clean, cwd=tmp_path)  # fmt: skip
    site = str(Path(torch.__file__).resolve().parents[1])  # torch's site-packages
    env = {**clean, "PYTHONPATH": site}
    script = tmp_path / "example.py"
    script.write_text(
        "import plasticity\n"
        + readme_example()
        + textwrap.dedent(
            f"""
            import importlib.metadata, importlib.util
            assert plasticity.__file__.startswith({str(venv)!r}), plasticity.__file__
            assert importlib.metadata.version("snntorch-plasticity") == plasticity.__version__
            assert importlib.util.find_spec("models") is None  # not installed by the wheel
            assert 0.0 <= fc.weight.min() and fc.weight.max() <= 1.0
            print("ok", plasticity.__version__)
            """
        )
    )
    run = subprocess.run([str(python), str(script)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path, env=env)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.strip().endswith(f"ok {plasticity.__version__}")
