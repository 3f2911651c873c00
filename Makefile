# Two commands do all the set-up on a fresh machine: `make demo` (the main job) and `make test`.
# Both create .venv on first use; torch/torchvision are pinned by constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow clean

install: $(STAMP)

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Two workers (pytest-xdist): one per core of a 2-core machine; the slow tests, which start processes of their own, run one at a time.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 tests

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q tests -m slow

clean:
	rm -rf $(VENV) outputs
