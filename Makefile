# Two entry points: `make demo` and `make test`; both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-examples test-ray docs lint bench-quick bench clean

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
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m "not slow and not ray and not examples" -q

test-slow: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m slow -q

# The paper's demonstrations at reduced size, each a script in its own process; their peers
# (CMA-ES, SPSA) come from the bench extra.
test-examples: $(STAMP)
	$(PY) -m pip install --quiet -e ".[bench]"
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 -m examples -q

# Ray Tune (about 430 MB, 35 s to install here) only for its own suite (about 90 s).
test-ray: $(STAMP)
	$(PY) -m pip install --quiet -e ".[ray]"
	OMP_NUM_THREADS=1 $(PY) -m pytest -p no:xdist -m ray -q

# The documentation site (Sphinx, MyST Markdown, furo): warnings are errors.
docs: $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

bench-quick: $(STAMP)
	$(PY) -m bench.run --preset quick

bench: $(STAMP)
	$(PY) -m bench.run --preset full

clean:
	rm -rf $(VENV) build docs/_build docs/auto_examples docs/sg_execution_times.rst *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache
