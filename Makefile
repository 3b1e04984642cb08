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

.PHONY: setup test test-under-load lint typecheck unit bench demo clean

setup: $(BIN)/atsource node_modules/.installed $(STUBS)/esp32/.installed $(STUBS)/rp2/.installed

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

clean:
	rm -rf $(VENV) node_modules $(STUBS) .pytest_cache .ruff_cache
