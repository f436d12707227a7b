# Yuanjian: `make run` sets up and serves an embedded instance; `make test` runs lint and the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ORACLE := .venv-oracle/.installed

.PHONY: run test lint venv oracle clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# pycanon (the anonymity oracle of the privacy tests) pins its own numpy/typer: separate venv.
$(ORACLE):
	test -x .venv-oracle/bin/python || $(PYTHON) -m venv .venv-oracle
	.venv-oracle/bin/python -m pip install -q pycanon==1.3.6 pyarrow==26.0.1
	touch $(ORACLE)

oracle: $(ORACLE)

# The demo city runs once (about a minute); later runs only print its logins again.
run: venv
	$(BIN)/yuanjian init
	$(BIN)/yuanjian demo
	$(BIN)/yuanjian serve

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint oracle
	@echo "== test suite on SQLite =="
	$(BIN)/pytest -q
	@echo "== database tests on PostgreSQL (127.0.0.1:5432) =="
	YUANJIAN_TEST_DB=postgresql $(BIN)/pytest -q -m db

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
