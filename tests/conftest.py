"""Shared fixtures. Unit tests run pure logic under CPython; emulated tests boot boards on the
real MicroPython VM (Node + the WebAssembly build installed by `make setup`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from servers import free_port, start_mosquitto, stop

ROOT = Path(__file__).resolve().parents[1]

# No timed assertion in any test: Hypothesis' per-example deadline (200 ms) and its "too slow"
# health check are timings, and fail on a busy machine. Loaded before the test modules, so
# their own settings(...) inherit it.
settings.register_profile("atsource", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("atsource")
START_US = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for parallel runs (`make test`: pytest-xdist, --dist loadgroup): a test goes to
    any free worker, except that tests sharing something costly to set up run on one worker,
    which sets it up once: board tests (`dut`, `duts`) share the session's emulated boards,
    and the tests of a module with a module-scoped fixture share that fixture. A test that
    names its own group (``xdist_group``) keeps it."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        names = set(getattr(item, "fixturenames", ()))
        if names & {"dut", "duts", "atsource_boards"}:
            item.add_marker(pytest.mark.xdist_group("atsource-boards"))
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = info.name2fixturedefs.values() if info is not None else ()
        if any(d[-1].scope == "module" for d in defs if d):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


@pytest.fixture(scope="session", autouse=True)
def _own_cache_and_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test session (each pytest-xdist worker has its own) gets its own cache (compiled
    firmware, default flash dirs), registry and readings store: parallel workers never share
    one, and a test run never touches the developer's."""
    base = tmp_path_factory.mktemp("atsource-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("ATSOURCE_CACHE", str(base / "cache"))
    mp.setenv("ATSOURCE_REGISTRY", str(base / "registry.db"))
    mp.setenv("ATSOURCE_DB", str(base / "readings.db"))
    mp.delenv("ATSOURCE_REGISTRY_KEY", raising=False)
    yield
    mp.undo()


@pytest.fixture
def flash(tmp_path: Path) -> Path:
    d = tmp_path / "flash"
    d.mkdir()
    return d


@pytest.fixture(params=["esp32-devkitc", "pico-w"])
def board_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real Mosquitto on a free loopback port; yields the port."""
    port = free_port()
    proc = start_mosquitto(tmp_path_factory.mktemp("mosquitto"), f"listener {port} 127.0.0.1")
    yield port
    stop(proc)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port (tests/support/postgres_server.py);
    yields its URL. Skips, saying why, only where PostgreSQL cannot be run."""
    import sys

    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from postgres_server import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as e:
        pytest.skip(f"PostgreSQL unavailable: {e}")


@pytest.fixture
def pg_url(postgres: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's server, for one test."""
    import hashlib
    import re

    from postgres_server import fresh_database

    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:10]
    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:40] + "_" + digest
    return fresh_database(postgres, name)
