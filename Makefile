# MarketGuard — two commands on a fresh clone: `make demo` and `make test`.
# Only Python 3.11, pip and Debian's apt are assumed; everything else is installed here.

PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test test-es lint bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install MarketGuard with its test tools

demo: install  ## run the demo scenario through the real pipeline (embedded DuckDB store)
	$(BIN)/marketguard demo

test: install  ## architecture contract, lint, then the whole test suite
	$(BIN)/lint-imports
	$(BIN)/ruff check marketguard collectors correlator playbooks tests
	$(BIN)/python -m pytest -q

test-es: install  ## conformance suite on both stores (a real cluster if MARKETGUARD_ES_URL is set, else osmem-server)
	$(BIN)/python -m pytest -q tests/conformance

bench: install  ## benchmarks: prints events/s, rules, detections and peak memory
	$(BIN)/marketguard bench

clean:  ## remove the virtualenv, demo data and benchmark data
	rm -rf $(VENV) .marketguard bench-data test-output
