# The README's two commands: `make run` (set up, then run the main job on embedded defaults)
# and `make test` (set up, then run the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_ARGS ?=

.PHONY: setup run test lint bench clean

setup: $(STAMP)

# torch first, at the tested version (constraints.txt: 2.13.0): that CPU wheel is the one the project
# is tested with; an unpinned torch pulled in by a dependency would be a multi-GB CUDA build. Then the
# package with every dependency at its tested version (pyproject.toml's ranges allow others).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# `multiworld run` ends by printing the `multiworld view` command that opens its store in a browser.
run: $(STAMP)
	$(BIN)/multiworld run --out runs/default $(RUN_ARGS)

# --durations: the slowest tests, read against the suite's budget (about 15 minutes on 2 cores).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 $(BIN)/python -m pytest -q --durations=15

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

# Regenerate every figure the README quotes, from a committed tree (refuses uncommitted changes to
# tracked files); FIGURES="store ray" runs some of them (`python benchmarks/figures.py --list`).
.PHONY: figures
figures: $(STAMP)
	$(BIN)/python benchmarks/figures.py $(FIGURES)

# The flake detector: the tests that touch processes, sockets, browsers or timing, N times (20),
# beside LOAD busy processes (0), failures per test (`.ci/stress --help`); K and FILES narrow it:
# `make stress-test N=20 LOAD=2 K=seed FILES=tests/test_vizdoom.py`.
.PHONY: stress-test
stress-test: $(STAMP)
	$(BIN)/python .ci/stress

clean:
	rm -rf $(VENV) build dist *.egg-info
