"""`atsource emulate` as a user runs it: a simulated day, and one-line errors for mistakes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from atsource.boards import load_board
from atsource.emulator.api import make_world


def atsource(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atsource.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| (.*)$")


@pytest.mark.parametrize("board", ["pico-w", "esp32-devkitc"])
def test_a_simulated_plaza_day_prints_readings_that_match_the_scenario(
    board: str, tmp_path: Path
) -> None:
    r = atsource(
        "emulate",
        board,
        "--scenario",
        "plaza",
        "--duration",
        "24h",
        "--seed",
        "7",
        "--flash",
        str(tmp_path / "flash"),
    )
    assert r.returncode == 0, r.stderr
    lines = [LINE.match(x) for x in r.stdout.splitlines()]
    assert all(lines), "every console line carries a simulated timestamp"
    env = [m for m in lines if m and m.group(2).startswith("env t=")]
    errors = [m for m in lines if m and m.group(2).startswith("env error")]
    assert env[0].group(1) == "2026-06-01 00:00:00"
    assert env[-1].group(1) == "2026-06-01 23:59:00"
    # The plaza's sensor is off the bus for an hour: a gap in readings, then they resume.
    assert len(env) + len(errors) == 1440 and 55 <= len(errors) <= 61
    # Every reading equals the scenario's weather at that minute, to the sensor's resolution.
    world = make_world(load_board(board), "plaza", 7, None)
    sensor = world.i2c_device(int(load_board(board).pins["i2c"]["id"]), 0x76)
    from datetime import UTC, datetime

    worst = 0.0
    for m in env:
        t_us = (
            int(datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp())
            * 1_000_000
        )
        temp, _, _ = sensor.model.environment(t_us)
        shown = float(re.search(r"t=(-?\d+\.\d+)C", m.group(2)).group(1))
        worst = max(worst, abs(shown - temp))
    assert worst <= 0.011
    assert "24.00 h simulated" in r.stderr


def test_unknown_board_is_one_line_and_exit_2() -> None:
    r = atsource("emulate", "esp8266", "--duration", "1m")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "atsource: error: unknown board 'esp8266' (known boards: esp32-devkitc, pico-w)"
    ]


def test_bad_scenario_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nstart = "2026-06-01T00:00:00Z"\nduration = "1h"\nbogus = 1\n')
    r = atsource("emulate", "pico-w", "--scenario", str(bad))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("atsource: error: ") and "bogus" in err[0]


def test_missing_scenario_and_bad_duration(tmp_path: Path) -> None:
    r = atsource("emulate", "pico-w", "--scenario", "nowhere")
    assert r.returncode == 2 and "scenario not found: nowhere" in r.stderr
    r = atsource("emulate", "pico-w", "--duration", "soon", "--flash", str(tmp_path))
    assert r.returncode == 2 and "bad duration 'soon'" in r.stderr
