"""Shared fixtures. Unit tests run pure logic under CPython; emulated tests boot boards on the
real MicroPython VM (Node + the WebAssembly build installed by `make setup`)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
