# The two set-up commands: `make demo` (the main job) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo quick test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## seed 000's study: 5 configurations x 10 trials x 80 epochs
	$(BIN)/batchlab run mnist-pairs

quick: $(STAMP)  ## the same study in a few minutes
	$(BIN)/batchlab run mnist-pairs --quick

test: $(STAMP)  ## two test processes: the suite's own runs leave a core idle a third of the time
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/python benches/seed000.py

clean:
	rm -rf $(VENV) runs .pytest_cache
