# GROVER Lens: the two commands a new user needs.
#   make dashboard   set up, build the built-in demo if missing, serve the app on 127.0.0.1
#   make test        set up, install what tests need, run the suite
PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 8501
RUNS   ?= runs
DEMO   ?= $(RUNS)/demo
PYTEST_ARGS ?=

BIN := $(VENV)/bin
# Root installs Debian packages directly; anyone else goes through sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: dashboard test demo install install-test browser clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamp files: reinstall only when the pins change.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e . || \
	  $(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

$(VENV)/.installed-test: requirements-test.txt $(VENV)/.installed
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-test.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Debian's Chromium for the headless-browser test (never `playwright install`).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

$(DEMO)/manifest.json: | $(VENV)/.installed
	$(BIN)/grover demo --out $(DEMO)

demo: $(DEMO)/manifest.json

dashboard: $(VENV)/.installed $(DEMO)/manifest.json
	@echo "GROVER Lens dashboard on http://$(HOST):$(PORT)  (runs folder: $(RUNS))"
	GROVER_RUNS_DIR=$(RUNS) $(BIN)/streamlit run dashboard/app.py \
	  --server.address $(HOST) --server.port $(PORT) --server.headless true \
	  --browser.gatherUsageStats false --client.toolbarMode viewer

test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean-demo:
	rm -rf $(DEMO)
