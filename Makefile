# Set-up in one command: `make demo` (the main job) or `make test` (the whole suite).
# `make demo` installs batchlab and what it needs to run, nothing more; `make test` adds the
# development extras (pytest, ruff, Ray, MLflow). Both pin torch to the build in constraints.txt,
# so every machine trains with the same kernels; `pip install batchlab` elsewhere keeps its own torch.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet -c constraints.txt
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: demo quick test bench results clean

$(RUNTIME): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $(RUNTIME)
	@echo
	@echo "batchlab $$($(BIN)/python -c 'import batchlab; print(batchlab.__version__)') is installed in $(VENV)."
	@echo "Call it as $(BIN)/batchlab, or first run  . $(BIN)/activate  and then just  batchlab"
	@echo

$(DEV): $(RUNTIME)
	$(PIP) -e '.[dev]'
	touch $(DEV)

demo: $(RUNTIME)  ## Chaffard's study: 5 configurations x 10 trials x 80 epochs
	$(BIN)/batchlab run mnist-pairs

quick: $(RUNTIME)  ## the same study in a few minutes
	$(BIN)/batchlab run mnist-pairs --quick

test: $(DEV)  ## two test processes: the suite's own runs leave a core idle a third of the time
	$(BIN)/python -m pytest -n 2

bench: $(RUNTIME)
	$(BIN)/python benches/seed000.py

results: $(RUNTIME)  ## docs/results.md from the recipes' stored studies in runs/ (run them first)
	$(BIN)/python scripts/results.py

clean:
	rm -rf $(VENV) runs .pytest_cache
