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
