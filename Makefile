# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test`.
# Each creates .venv and installs the project into it on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/archipelago simulate

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest

bench: $(STAMP)
	$(VENV)/bin/python bench/fgd_protocol.py --out bench/results/fgd_protocol.md
	$(VENV)/bin/python bench/decision_speed.py --out bench/results/decision_speed.md

clean:
	rm -rf $(VENV) .pytest_cache
