# `make demo` and `make test` do all the set-up they need on a fresh machine.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test check lint
setup: $(VENV)/.installed

$(VENV)/.installed: setup.py
	@# Debian's chromium for the dashboard's browser test (skipped where it is missing);
	@# as root this installs it, elsewhere it says how.
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
		echo "chromium not installed: the browser test will be skipped (apt-get install chromium)"
	@# Debian's mosquitto, the broker the MQTT bridge's tests start (skipped where missing).
	@command -v mosquitto >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto; } || \
		echo "mosquitto not installed: the MQTT tests will be skipped (apt-get install mosquitto)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: setup
	$(BIN)/vadstream demo $(ARGS)

test: setup
	$(BIN)/python -m pytest -q $(ARGS)

# The fast tier: every test but those marked slow (subprocesses, training, browser, broker,
# cluster, bench); `make test` runs them all.
check: setup
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

lint: setup
	$(BIN)/ruff check .
