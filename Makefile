# atsource: one entry point for set-up, checks, tests, benchmarks and the demo.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STUBS   := .stubs
ESP32_STUBS := micropython-esp32-stubs==1.29.0.post1
RP2_STUBS   := micropython-rp2-rpi_pico_w-stubs==1.29.0.post1
STDLIB_STUBS := micropython-stdlib-stubs==1.29.0.post2

# make test: pytest-xdist on every core; tests that share a costly set-up (the session's
# emulated boards, a module fixture, one simulated day) run on one worker (tests/conftest.py).
TEST_WORKERS ?= auto
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadgroup
# make test-under-load: CPU hogs per core beside the suite (benchmarks/cpu_hog.py).
HOG_PER_CORE ?= 2

.PHONY: setup system-packages test test-under-load lint typecheck unit bench demo clean mpy-tests

setup: $(BIN)/atsource node_modules/.installed $(STUBS)/esp32/.installed $(STUBS)/rp2/.installed system-packages

# System packages some tests use (they skip with the reason when missing): mosquitto (a real
# broker), postgresql (the city-scale store, started by the tests on loopback) and chromium
# (the public register opened in a real headless browser). Installed with apt-get when
# running as root; otherwise say what to install.
SYSTEM_PACKAGES := mosquitto chromium
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null 2>&1 || [ -x /usr/sbin/$$p ] || missing="$$missing $$p"; done; \
	{ command -v initdb || ls /usr/lib/postgresql/*/bin/initdb; } >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "setup: apt-get install$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	    || echo "setup: could not install$$missing; the tests that need them will skip"; \
	else echo "setup: not installed:$$missing (apt-get install$$missing); the tests that need them will skip"; fi

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
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

# The suite while other processes keep every core busy: nothing may fail because the machine
# is slow (docs/testing.md, "Steadiness").
test-under-load:
	$(BIN)/python -m benchmarks.cpu_hog --per-core $(HOG_PER_CORE) -- $(MAKE) test

bench:
	$(BIN)/python -m benchmarks.run

demo:
	$(BIN)/atsource demo

# MicroPython's own test suite over an emulated board's serial port (docs/testing.md); needs
# a micropython checkout: make mpy-tests MICROPYTHON=~/src/micropython
mpy-tests:
	@test -n "$(MICROPYTHON)" || { echo "make mpy-tests: give MICROPYTHON=/path/to/micropython"; exit 2; }
	$(BIN)/python -m atsource.devtools.mpy_suite --micropython $(MICROPYTHON) --board pico-w
	$(BIN)/python -m atsource.devtools.mpy_suite --micropython $(MICROPYTHON) --board esp32-devkitc

clean:
	rm -rf $(VENV) node_modules $(STUBS) .pytest_cache .ruff_cache
