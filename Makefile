# Two entry points for a fresh machine with Python 3.11+:
#   make demo  - set up .venv and run the whole chain on synthetic data
#   make test  - set up .venv, then lint (ruff) and run the tests and the docstrings' examples
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: venv demo test bench clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch and torchvision first, pinned as a pair (PyPI's torchvision does not import beside the
	# torch 2.13.0 CPU wheel); a bare or open-ended torch would pull the newest multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev,dlib,demo,dask]'
	touch $(BIN)/activate

venv: $(BIN)/activate

demo: venv
	$(BIN)/python -m softnet_cli.demo demo_out

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --doctest-modules tests flowkit spotnet cli

bench: venv
	$(BIN)/python -m pytest benchmarks/ --benchmark-only

clean:
	rm -rf $(VENV) demo_out
