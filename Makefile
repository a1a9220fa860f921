# diffsight: two commands do all the set-up on a fresh machine.
#   make demo   create .venv if missing, install, run the main job and print where its report is
#   make test   create .venv if missing, install, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install browser demo test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: a CPU build of this version lies on the developer machines; any other pulls gigabytes
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the offline-HTML checks (tests/browser.py). Installed with apt-get where that exists
# and we are root; elsewhere a note, and the browser tests skip with the same reason.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
		:; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update && apt-get install -y --no-install-recommends chromium) \
			|| echo "note: apt-get could not install chromium; the offline-HTML browser tests will skip"; \
	else \
		echo "note: chromium not found and not installable here (needs apt-get and root); the offline-HTML browser tests will skip"; \
	fi

demo: install
	$(VENV)/bin/diffsight demo

# Two workers (pytest-xdist), one per core; whole files go to one worker so module fixtures (a server process, a
# trained model) are built once.
test: install browser
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: install
	$(PY) benchmarks/sampling.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/tracing.py
	$(PY) benchmarks/anomaly.py
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/tables.py
	$(PY) benchmarks/reconstruction.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/series.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/text_attention.py

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) outputs .pytest_cache build src/*.egg-info
