# diffsight: two commands do all the set-up on a fresh machine.
#   make demo   create .venv if missing, install, run the main job and print where its report is
#   make test   create .venv if missing, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU build of this version lies on the developer machines; any other pulls gigabytes
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/diffsight demo --out outputs/demo.png

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/training.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache build src/*.egg-info
