# Yuanjian: `make run` sets up and serves an embedded instance; `make test` runs lint and the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: venv
	$(BIN)/yuanjian init
	$(BIN)/yuanjian serve

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	@echo "== test suite on SQLite =="
	$(BIN)/pytest -q
	@echo "== database tests on PostgreSQL (127.0.0.1:5432) =="
	YUANJIAN_TEST_DB=postgresql $(BIN)/pytest -q -m db

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
