# Two commands do everything on a machine that has only Python:
#   make demo   - virtualenv + torch==2.13.0 (CPU) + project, then the main job: Song 2000 (PNGs in results/)
#   make test   - the same set-up plus dev extras, then the whole suite (.ci/run calls this)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
OUT    ?= results

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch pulls GBs of CUDA packages
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[dev,digits]"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m models.song2000 --out $(OUT)

test: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q --nbmake tests plasticity notebooks

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info
