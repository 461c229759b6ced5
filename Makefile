# Two entry points: `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench-quick bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m zg_asktell demo

# One BLAS/OpenMP thread per test worker: two workers with two threads each on a
# 2-core machine made the suite 20x slower (10 min instead of 30 s).
test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m "not slow" -q

test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m slow -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

bench-quick: $(STAMP)
	$(PY) -m bench.run --preset quick

bench: $(STAMP)
	$(PY) -m bench.run --preset full

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache
