"""The virtual clock's lookahead (docs/emulator.md "The virtual clock"): the world dealt ahead
of the firmware changes nothing the firmware sees. The same scenario and seed, run with no
lookahead, with the default span and with a short one, give the same console byte for byte
and the same peak heap at the same instant; with lookahead the host is asked far less often.

The scenario is busy and has every kind of turn the engine must not deal past: a power cut,
a network outage, the sensor pulled off the bus, adverts from a crowd, beams and motion."""

from __future__ import annotations

from pathlib import Path

import pytest
from atsource import paths
from atsource.boards import load_board
from atsource.emulator.api import make_world, prepare_flash
from atsource.emulator.engine import EmulatedBoard, RunStats

SCENARIO = """
name = "turns"
description = "A busy hour with a power cut, an outage and a sensor fault"
start = "2026-06-01T07:00:00Z"
duration = "40m"
seed = 11
window_s = 300

[people]
hourly_rate = RATE
dwell_minutes = { median = 4.0, sigma = 1.0, min = 0.5, max = 30.0 }
door_share = 0.4
motion_per_hour = 6.0
phone_share = 0.8
rotation_minutes = 5.0
adv_interval_s = 2.0

[[faults]]
kind = "sensor_disconnect"
at = "+4m"
duration = "3m"

[[faults]]
kind = "power_cut"
at = "+11m"
duration = "20s"

[[faults]]
kind = "network_outage"
at = "+21m"
duration = "3m"
"""


def _run(board: str, tmp: Path, scenario: Path, **kw: object) -> tuple[bytes, RunStats]:
    b = load_board(board)
    flash = tmp / f"flash-{len(list(tmp.iterdir()))}"
    prepare_flash(b, flash, firmware=paths.FIRMWARE)
    world = make_world(b, str(scenario), 1, None)
    emu = EmulatedBoard(
        b, flash, world=world, seed=1, entry="sensor.app", instance="lookahead", **kw
    )
    stats = emu.run(duration_us=world.end_us - world.start_us)
    return bytes(emu.console), stats


@pytest.mark.parametrize("board", ["pico-w", "esp32-devkitc"])
def test_lookahead_changes_nothing_the_firmware_sees(board: str, tmp_path: Path) -> None:
    scenario = tmp_path / "turns.toml"
    scenario.write_text(SCENARIO.replace("RATE", str([300] * 24)))
    off_console, off = _run(board, tmp_path, scenario, lookahead=False)
    assert [r.kind for r in off.resets] == ["power", "power"]  # the cut happened
    assert off.events > 500 and b"win " in off_console
    for kw in ({}, {"span_us": 1_000_000}):
        console, stats = _run(board, tmp_path, scenario, **kw)
        assert console == off_console, kw
        assert (stats.heap_peak, stats.heap_peak_t_us) == (off.heap_peak, off.heap_peak_t_us), kw
        assert stats.heap_samples == off.heap_samples, kw
        if not kw:
            assert stats.requests < off.requests, (stats.requests, off.requests)
