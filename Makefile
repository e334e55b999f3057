# Two commands do everything on a machine that has only Python:
#   make demo   - virtualenv + torch==2.13.0 (CPU) + project, then the main job: Song 2000 (PNGs in results/)
#   make test   - the same set-up plus dev extras, then the whole suite (.ci/run calls this)
# and, from the same virtualenv:
#   make docs      - the documentation site (Sphinx) into docs/_build/html, warnings are errors
#   make notebook  - JupyterLab on notebooks/
#   make gpu-check - on a machine with an NVIDIA GPU: the CUDA tests and GPU benchmarks, one summary
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
OUT    ?= results

# models/ is a folder of this checkout, not part of the installed package: the tests, the
# notebooks and the docs import it from here
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: demo test bench gpu-check reference reference-nest lint docs notebook clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch pulls GBs of CUDA packages
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

# the docs extra too, so that the suite's docs build (tests/test_docs.py) runs
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,digits,docs]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PIP) install -q -e ".[docs,digits]"
	touch $@

$(VENV)/.installed-notebook: $(VENV)/.installed
	$(PIP) install -q -e ".[notebook,digits]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m models.song2000 --out $(OUT)

test: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q --nbmake tests plasticity notebooks

# the site, with warnings (broken cross-references included) as errors; the notebooks are
# executed during the build (cached in docs/_build/.jupyter_cache)
docs: $(VENV)/.installed-docs
	$(PY) -m sphinx -W --keep-going -n -b html docs docs/_build/html
	@echo "open docs/_build/html/index.html"

notebook: $(VENV)/.installed-notebook
	$(PY) -m jupyter lab notebooks/

# peers for the benchmarks, installed without their dependencies so that pip keeps the CPU
# torch (SpikingJelly, Norse and BindsNET otherwise pull CUDA builds; BindsNET 0.3.4 declares
# torch >= 2.14 but the parts benchmarked run on 2.13, loaded without its package __init__)
$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(PIP) install -q -e ".[dev,digits,bench]"
	$(PIP) install -q --no-deps spikingjelly==2.0.0 norse==1.1.0 bindsnet==0.3.4
	touch $@

# every benchmark, then their tables written into benchmarks/README.md
bench: $(VENV)/.installed-bench
	$(PY) benchmarks/stdp_dense.py --rate 0.01 0.05 0.2 --out benchmarks/results
	$(PY) benchmarks/stdp_rules.py --rate 0.01 0.05 0.2 --out benchmarks/results
	$(PY) benchmarks/stdp_conv.py --out benchmarks/results
	$(PY) benchmarks/distributed_scaling.py --out benchmarks/results
	$(PY) benchmarks/online.py --out benchmarks/results
	$(PY) benchmarks/fed_signal.py
	$(PY) benchmarks/eprop.py --out benchmarks/results
	# the engine before the rule language, for engine_targets.py to run beside this one
	rm -rf .bench-old && mkdir -p .bench-old && git archive 0e67eb4 plasticity | tar -x -C .bench-old
	$(PY) benchmarks/engine_targets.py --old .bench-old --out benchmarks/results
	$(PY) benchmarks/readme.py

# the CUDA tests and the GPU benchmarks in one command (under 8 minutes), one summary, written
# to benchmarks/results/gpu_check.md; needs a CUDA build of torch in $(VENV) and a visible GPU:
# without one it says so and fails (exit 2) without running anything (docs/benchmarks.md)
gpu-check: $(VENV)/.installed-dev
	$(PY) benchmarks/gpu_check.py --out benchmarks/results

# Brian2's STDP example, 10 seeds, for `make demo` to compare with (docs/models/song2000.md),
# and Brian2's Vogels et al. (2011) example, 5 seeds at full size (10^4 neurons, 10 s) and at
# the reduced size of the suite's test (800 + 200 neurons at 20 %: the same in-degrees), for
# models/vogels2011.py (docs/vogels2011_brian2.md; ~3 min a full-size seed on 2 loaded cores).
# Its own environment: Brian2 2.9 (the last for Python 3.11) does not import with numpy 2.4
reference:
	$(PYTHON) -m venv .venv-brian2
	.venv-brian2/bin/python -m pip install -q "brian2>=2.7" "numpy<2.4"
	.venv-brian2/bin/python benchmarks/song2000_brian2.py --seeds 0 1 2 3 4 5 6 7 8 9 --out benchmarks/results
	.venv-brian2/bin/python benchmarks/vogels2011_brian2.py --seeds 0 1 2 3 4 --out benchmarks/results
	.venv-brian2/bin/python benchmarks/vogels2011_brian2.py --ne 800 --epsilon 0.2 --seeds 0 1 2 3 4 --out benchmarks/results

# NEST 3.10's synapse models on fixed spike trains, the weights into tests/data/nest_reference.json,
# which tests/test_nest_reference.py checks our rules against (docs/matching_nest.md). Its own
# environment: NEST's wheel brings its numpy; nothing of ours is installed there
reference-nest:
	$(PYTHON) -m venv .venv-nest
	.venv-nest/bin/python -m pip install -q --disable-pip-version-check nest-simulator==3.10.0 numpy
	.venv-nest/bin/python benchmarks/nest_reference.py --out tests/data
	.venv-nest/bin/python benchmarks/nest_eprop.py --out tests/data

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) $(OUT) build dist *.egg-info docs/_build docs/tutorials/*.ipynb
