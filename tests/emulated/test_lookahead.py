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
        assert (stats.i2c_local > 0) if not kw or off.i2c_local else True, kw
    assert off.i2c_local == 0


# Every kind of BME280 transfer, at every phase of a forced conversion, across a sensor fault
# and a soft reset of the chip: with lookahead the runner answers most of them from the
# host's snapshot, and each answer must be the host's, byte for byte (docs/emulator.md "I2C").
I2C_CODE = """
import machine, time
i2c = machine.I2C(0)
A = 0x76
def rd(reg, n):
    return i2c.readfrom_mem(A, reg, n).hex()
for k in range(36):
    out = []
    try:
        i2c.writeto_mem(A, 0xF2, bytes([k % 6]))
        i2c.writeto_mem(A, 0xF5, bytes([(k * 37) & 0xFF]))
        i2c.writeto_mem(A, 0xF4, bytes([((k % 5) << 5) | ((k % 3) << 2) | 1 + k % 2]))
        for j in range(10):
            out.append(rd(0xF2, 14))
            time.sleep_us(300 + 150 * (k % 4))
        out.append(i2c.readfrom(A, 3).hex())
        i2c.writeto(A, bytes([0xF2, k % 8, 0xF5, 0x10, 0xF7]))
        out.append(i2c.readfrom(A, 2).hex())
        out.append(rd(0x88, 26) + rd(0xD0, 1) + rd(0xE1, 7))
        if k % 9 == 4:
            i2c.writeto_mem(A, 0xE0, b"\\xb6")
            for j in range(5):
                out.append(rd(0xF3, 1))
                time.sleep_us(600)
        if k % 7 == 6:
            i2c.writeto_mem(A, 0xF4, b"\\x27")
            time.sleep_ms(30)
            out.append(rd(0xF3, 5))
            i2c.writeto_mem(A, 0xF4, b"\\x00")
    except OSError as e:
        out.append("nack %d" % e.args[0])
    print("i2c", k, time.ticks_us(), " ".join(out))
    time.sleep(14)
"""


@pytest.mark.parametrize("board", ["pico-w", "esp32-devkitc"])
def test_i2c_answered_in_the_runner_as_the_host_would(board: str, tmp_path: Path) -> None:
    scenario = tmp_path / "turns.toml"
    scenario.write_text(SCENARIO.replace("RATE", str([30] * 24)))
    out = []
    for kw in ({"lookahead": False}, {}, {"span_us": 1_000_000}):
        b = load_board(board)
        flash = tmp_path / f"flash-{len(out)}"
        flash.mkdir()
        (flash / "main.py").write_text(I2C_CODE)
        world = make_world(b, str(scenario), 1, None)
        emu = EmulatedBoard(b, flash, world=world, seed=1, instance="i2c", **kw)  # type: ignore[arg-type]
        stats = emu.run(duration_us=10 * 60 * 1_000_000)
        lines = [t for _, t in emu.lines if t.startswith("i2c ")]
        out.append((lines, stats.i2c_local))
    (off, off_local), *ahead = out
    assert len(off) == 36
    assert sum("nack" in t for t in off) >= 10  # the sensor was off the bus 3 minutes
    assert off_local == 0
    for lines, local in ahead:
        assert lines == off
        assert local > 36 * 10


def test_the_bench_world_answers_the_bme280_from_the_runner_too(tmp_path: Path) -> None:
    # No scenario: the desk's BME280 is the model itself, asked for snapshots like a
    # scenario's part (a TypeError here once stopped `atsource emulate` without --scenario).
    b = load_board("pico-w")
    flash = tmp_path / "flash"
    flash.mkdir()
    prepare_flash(b, flash, firmware=paths.FIRMWARE)
    emu = EmulatedBoard(b, flash, world=make_world(b, None, 1, None), seed=1, entry="sensor.app")
    emu.run(duration_us=20 * 60 * 1_000_000)
    lines = [line for _, line in emu.lines]
    assert any(line.startswith("win ") and " env " in line for line in lines), lines[-20:]
    assert emu.stats.i2c_local > 0
