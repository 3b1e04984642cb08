"""Shared fixtures. Unit tests run pure logic under CPython; emulated tests boot boards on the
real MicroPython VM (Node + the WebAssembly build installed by `make setup`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import free_port, start_mosquitto, stop

ROOT = Path(__file__).resolve().parents[1]
START_US = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z


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
