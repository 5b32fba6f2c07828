# The two commands of the quick start: `make demo` and `make test`.
# Both create (once) and use a local virtualenv in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint unit integration e2e bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chargewatch demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q -m unit

integration: $(STAMP)
	$(BIN)/pytest -q -m integration

e2e: $(STAMP)
	$(BIN)/pytest -q -m e2e

clean:
	rm -rf .data .pytest_cache .hypothesis
