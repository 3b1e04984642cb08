"""`atsource emulate` as a user runs it: a simulated day, and one-line errors for mistakes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def atsource(*args: str) -> subprocess.CompletedProcess[str]:
    # No wall-clock limit: a simulated run ends by itself, later on a busy machine.
    return subprocess.run(
        [sys.executable, "-m", "atsource.cli", *args], capture_output=True, text=True
    )


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| (.*)$")


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


def test_fleet_runs_boards_of_both_kinds_in_parallel() -> None:
    r = atsource("emulate", "--fleet", "3", "--duration", "10m", "--seed", "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["boards"] == 3 and out["failed"] == 0 and 1 <= out["workers"] <= 3
    runs = out["runs"]
    assert [x["board"] for x in runs] == ["esp32-devkitc", "pico-w", "esp32-devkitc"]
    assert [x["seed"] for x in runs] == [5, 6, 7]
    assert all(x["simulated_s"] == 600 and x["scenario"] == "residential" for x in runs)
    assert all(0 < x["heap_peak"] <= x["ram_budget"] for x in runs)
    assert out["board_days"] == round(3 * 600 / 86_400, 3)


def test_fleet_refuses_single_board_options() -> None:
    r = atsource("emulate", "--fleet", "2", "--serial")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "atsource: error: --fleet runs the repository firmware on fresh flash: drop --serial"
    ]
    r = atsource("emulate")
    assert r.returncode == 2 and "name the BOARD to emulate" in r.stderr
