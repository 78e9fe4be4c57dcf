# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check format bench install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[receiver,infra,policy,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/secure-export demo

test: $(STAMP)
	@.ci/ensure-postgresql
	$(BIN)/python -m pytest

# The checks every change passes (CI runs them before the tests): formatting, lint, strict typing.
check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# Rewrites the tree the way `make check` wants it (formatting and ruff's safe fixes).
format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
