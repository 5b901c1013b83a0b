# Two entry points a fresh clone needs: `make run` (the dashboard on the offline default) and
# `make test` (the whole suite). Both create .venv from the pinned requirements first.
# Extras: `make test-fast` (the suite without the slow end-to-end tests) and `make lint`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint notebooks install clean-venv

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## The main job: the dashboard, opening on the offline digits default (http://localhost:8501).
run: $(STAMP)
	$(BIN)/streamlit run app/main.py

## The whole suite in parallel processes (pytest-xdist, one per core, at most 4; tests/conftest.py says how they share).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal --durations=15

## The suite without the tests marked slow (digits runs, the dashboard, the browser, the notebooks).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal -m "not slow and not notebooks"

## ruff (pyflakes, imports, line length) and mypy (stakes_core, settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check stakes_core tests app notebooks benchmarks
	$(BIN)/mypy

## Execute every notebook (full settings) and render it with its outputs to docs/notebooks/*.html.
notebooks: $(STAMP)
	$(BIN)/python notebooks/render.py

clean-venv:
	rm -rf $(VENV)
