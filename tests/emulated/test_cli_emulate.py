"""`atsource emulate` as a user runs it: a simulated day, and one-line errors for mistakes."""

from __future__ import annotations

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
