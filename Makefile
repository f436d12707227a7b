# Yuanjian: `make run` sets up and serves an embedded instance; `make test` runs lint and the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ORACLE := .venv-oracle/.installed

.PHONY: run test lint venv oracle sysdeps clean

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

# Debian packages the suite drives: Chromium (browser journeys, never a downloaded browser),
# a CJK font so Chinese renders in screenshots, jq (the API guide's examples).
SYSDEPS := chromium fonts-noto-cjk jq
sysdeps:
	@missing=""; for p in $(SYSDEPS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: lint oracle sysdeps
	@echo "== test suite on SQLite =="
	$(BIN)/pytest -q
	@echo "== database tests on PostgreSQL (127.0.0.1:5432) =="
	YUANJIAN_TEST_DB=postgresql $(BIN)/pytest -q -m db

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
