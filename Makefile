# MarketGuard — two commands on a fresh clone: `make demo` and `make test`.
# Only Python 3.11, pip and Debian's apt are assumed; everything else is installed here.

PY     ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install install-tools demo test test-es lint bench dashboards clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install MarketGuard with its test tools

APT_PKGS := prometheus prometheus-alertmanager poppler-utils chromium chromium-driver \
            libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

install-tools:  ## Debian packages: promtool/amtool (alerting tests), pango (PDF reports), poppler, chromium (browser tests)
	@missing=$$(for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "apt-get install $$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; fi

demo: install install-tools  ## run the demo scenario through the real pipeline (embedded DuckDB store)
	$(BIN)/marketguard demo

test: install install-tools  ## architecture contract, lint, then the whole test suite
	$(BIN)/lint-imports
	$(BIN)/ruff check marketguard collectors correlator playbooks tests dashboards
	$(BIN)/python -m pytest -q

test-es: install  ## conformance suite on both stores (a real cluster if MARKETGUARD_ES_URL is set, else osmem-server)
	$(BIN)/python -m pytest -q tests/conformance

bench: install  ## benchmarks: prints events/s, rules, detections and peak memory
	$(BIN)/marketguard bench

dashboards: install  ## re-render docs/dashboards/*.png from a short demo run
	$(BIN)/python dashboards/render.py

clean:  ## remove the virtualenv, demo data and benchmark data
	rm -rf $(VENV) .marketguard bench-data test-output
