# Two entry points a fresh clone needs: `make run` (the main job on the offline default) and
# `make test` (the whole suite). Both create .venv from the pinned requirements first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install clean-venv

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## The offline default: pretrain (or load) the digits model, unlearn k=16 with the paper's four methods.
run: $(STAMP)
	$(BIN)/stakes run --preset digits --k 16 --seeds 0 --out runs

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
