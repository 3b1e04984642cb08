# atsource: one entry point for set-up, checks, tests, benchmarks and the demo.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STUBS   := .stubs
ESP32_STUBS := micropython-esp32-stubs==1.29.0.post1
RP2_STUBS   := micropython-rp2-rpi_pico_w-stubs==1.29.0.post1
STDLIB_STUBS := micropython-stdlib-stubs==1.29.0.post2

.PHONY: setup system-deps test lint typecheck unit bench demo clean

setup: system-deps $(BIN)/atsource node_modules/.installed $(STUBS)/esp32/.installed $(STUBS)/rp2/.installed

# Servers the integration tests start on loopback (PostgreSQL, Mosquitto): installed with
# apt-get when missing and running as root; elsewhere those tests skip and say why.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  pkgs=""; \
	  { command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || pkgs="$$pkgs postgresql"; \
	  { command -v mosquitto || ls /usr/sbin/mosquitto; } >/dev/null 2>&1 || pkgs="$$pkgs mosquitto"; \
	  if [ -n "$$pkgs" ]; then \
	    echo "setup: apt-get install$$pkgs"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs >/dev/null) \
	      || echo "setup: could not install$$pkgs; their tests will skip"; \
	  fi; \
	fi

$(BIN)/atsource: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# MicroPython stubs for each port, kept apart so each type-check pass sees one port only.
$(STUBS)/esp32/.installed:
	$(BIN)/pip install --quiet --no-deps --target $(STUBS)/esp32 $(ESP32_STUBS) $(STDLIB_STUBS)
	@touch $@
$(STUBS)/rp2/.installed:
	$(BIN)/pip install --quiet --no-deps --target $(STUBS)/rp2 $(RP2_STUBS) $(STDLIB_STUBS)
	@touch $@

lint: typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check host_tools tests benchmarks

typecheck:
	$(BIN)/python -m atsource.devtools.typecheck

test: lint
	$(BIN)/pytest -q

bench:
	$(BIN)/python -m benchmarks.run

demo:
	$(BIN)/atsource demo

clean:
	rm -rf $(VENV) node_modules $(STUBS) .pytest_cache .ruff_cache
