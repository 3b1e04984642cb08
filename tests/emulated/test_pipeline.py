"""The sensing pipeline on both emulated boards, against the scenarios' ground truth.

Each scenario day runs once per board through `atsource emulate` as a user runs it (bench
mode: the board is not provisioned, so its console shows the raw window aggregates), and the
tests below compare those lines with what really happened in the world.
"""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from atsource.audit import Auditor, flash_blobs
from atsource.boards import load_board
from atsource.emulator.api import make_world

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| (.*)$")
WIN = re.compile(r"^win (\S+) (\w+) ?(.*)$")
BOARDS = ["esp32-devkitc", "pico-w"]


def each_day(*scenarios: str) -> pytest.MarkDecorator:
    """Parametrize over every board and these scenarios. The tests of one simulated day form
    one xdist group, so parallel workers (make test) run each day once, and different days
    at the same time."""
    return pytest.mark.parametrize(
        ("board", "scenario"),
        [
            pytest.param(b, s, id=f"{b}-{s}", marks=pytest.mark.xdist_group(f"day-{b}-{s}"))
            for b in BOARDS
            for s in scenarios
        ],
    )


def _epoch(stamp: str) -> int:
    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


class Day:
    def __init__(self, board: str, scenario: str, stdout: str, stderr: str, flash: Path) -> None:
        self.board, self.scenario, self.stdout, self.stderr, self.flash = (
            board,
            scenario,
            stdout,
            stderr,
            flash,
        )
        self.lines = [m.group(2) for m in map(LINE.match, stdout.splitlines()) if m]
        self.windows: dict[str, dict[int, dict[str, Any]]] = {}
        for text in self.lines:
            m = WIN.match(text)
            if not m:
                continue
            fields: dict[str, Any] = {"raw": m.group(3)}
            for k, v in re.findall(r"(\w+)=(\S+)", m.group(3)):
                fields[k] = v
            self.windows.setdefault(m.group(2), {})[_epoch(m.group(1))] = fields
        world = make_world(load_board(board), scenario, None, None)
        self.world = world
        self.truth = {row["start"]: row for row in world.ground_truth(900)}


_cache: dict[tuple[str, str], Day] = {}


def run_day(board: str, scenario: str, tmp: Path) -> Day:
    key = (board, scenario)
    if key not in _cache:
        flash = tmp / f"{board}-{scenario}"
        r = subprocess.run(
            [sys.executable, "-m", "atsource.cli", "emulate", board, "--scenario", scenario,
             "--flash", str(flash), "--erase", "--duration", "24h"],
            capture_output=True, text=True,  # no wall-clock limit: a busy machine is slow
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        _cache[key] = Day(board, scenario, r.stdout, r.stderr, flash)
    return _cache[key]


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("days")
    return lambda board, scenario: run_day(board, scenario, tmp)


def _full(day: Day, start: int) -> bool:
    t = day.truth.get(start)
    return t is not None and t["covered_s"] == 900 and t["sensor_present"] == 1.0


@pytest.mark.slow
@each_day("plaza", "residential", "smoke")
def test_environment_window_means_match_ground_truth(days: Any, board: str, scenario: str) -> None:
    day = days(board, scenario)
    env = day.windows["env"]
    checked = 0
    for start, f in env.items():
        if "t" not in f or not _full(day, start) or f["lost"] != "0":
            continue
        t_mean = float(f["t"].rstrip("C").split("/")[0])
        rh_mean = float(f["rh"].rstrip("%"))
        p_mean = int(f["p"].rstrip("Pa"))
        truth = day.truth[start]
        assert abs(t_mean - truth["temp_mean_c"]) <= 0.1, (start, f, truth["temp_mean_c"])
        assert abs(rh_mean - truth["rh_mean"]) <= 1.0
        assert abs(p_mean - truth["pressure_mean_pa"]) <= 20
        checked += 1
    expected = sum(1 for s in day.truth if _full(day, s)) - 2  # the first may be partial
    assert checked >= expected, (checked, expected)


@pytest.mark.slow
@each_day("plaza")
def test_plaza_line_crossings_within_two_percent(days: Any, board: str, scenario: str) -> None:
    day = days(board, scenario)
    door = day.windows["doorway"]
    got_in = sum(int(f["in"]) for f in door.values())
    got_out = sum(int(f["out"]) for f in door.values())
    # Crossings completed while the board ran (it starts counting once its clock is set).
    first = min(door)
    rows = [r for s, r in day.truth.items() if s >= first]
    want_in = sum(r["crossings_in"] for r in rows)
    want_out = sum(r["crossings_out"] for r in rows)
    assert want_in > 3000 and want_out > 3000
    assert abs(got_in - want_in) <= 0.02 * want_in, (got_in, want_in)
    assert abs(got_out - want_out) <= 0.02 * want_out, (got_out, want_out)


@pytest.mark.slow
@each_day("plaza", "residential")
def test_ble_distinct_counts_within_five_percent(days: Any, board: str, scenario: str) -> None:
    day = days(board, scenario)
    ble = day.windows["ble"]
    got = want = 0
    for start, f in ble.items():
        t = day.truth.get(start)
        if t is None or t["covered_s"] != 900:
            continue
        got += int(f["distinct"])
        want += t["addresses_distinct"]
    assert want > 100
    assert abs(got - want) <= 0.05 * want, (got, want)


@pytest.mark.slow
@each_day("plaza")
def test_sensor_off_the_bus_leaves_a_gap_in_env_only(days: Any, board: str, scenario: str) -> None:
    day = days(board, scenario)
    off = day.world.fault_intervals("sensor_disconnect")[0]
    off0, off1 = off[0] // 1_000_000, off[1] // 1_000_000
    env, health, door = day.windows["env"], day.windows["health"], day.windows["doorway"]
    inside = [s for s in env if s >= off0 and s + 900 <= off1]
    assert len(inside) == 4
    for s in inside:
        assert env[s]["raw"].startswith("none"), env[s]
        assert int(health[s]["faults"], 16) & 1, "the fault shows in health"
        assert s in door, "the other streams carry on"
    after = [s for s in env if s >= off1 + 900]
    assert after and all("t" in env[s] for s in after), "readings resume"
    assert all(int(health[s]["faults"], 16) & 1 == 0 for s in after)
    assert "env: sensor fault (no answer)" in day.lines
    assert "env: sensor back" in day.lines


@pytest.mark.slow
@each_day("plaza")
def test_no_identifier_reaches_console_or_flash(days: Any, board: str, scenario: str) -> None:
    day = days(board, scenario)
    ids = day.world.names_and_addresses()
    auditor = Auditor(ids["addresses"], ids["names"])
    assert auditor.identifiers > 10000
    blobs = [("console", day.stdout.encode()), ("stderr", day.stderr.encode())]
    result = auditor.scan(blobs + flash_blobs(day.flash))
    assert result.passed, result.hits[:5]
    assert result.sources >= 10
