"""Simulated days on one emulated board: CPU seconds per day, against the issue's goals and a
floor measured in the same run.

- residential: goal 2 CPU-s per board-day. The board is idle most of the day (it wakes every
  few seconds to feed its watchdog and to sample), so the figure is the emulator's cost per
  wake-up; no floor can be replayed for it.
- plaza: goal at most twice the firmware's own work on the day's adverts. The floor is that
  work alone: the adverts this run dealt to the board, replayed straight into the repository's
  ``sensor/presence.py`` in the same MicroPython build (benchmarks/firmware_floor.mjs).
"""

from __future__ import annotations

import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from atsource import paths
from atsource.boards import load_board
from atsource.emulator.api import make_world, prepare_flash
from atsource.emulator.engine import EmulatedBoard

DAY_US = 86_400 * 1_000_000
RESIDENTIAL_GOAL_CPU_S = 2.0
PLAZA_GOAL_RATIO = 2.0


class _Recorder:
    """The scenario world, with every advert it deals kept aside (references only: the
    bench must not slow the run it measures)."""

    def __init__(self, world: Any) -> None:
        self._world = world
        self.adverts: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world, name)

    def events_until(self, t_us: int) -> list[tuple[Any, ...]]:
        evs = self._world.events_until(t_us)
        self.adverts += [e for e in evs if e[0] == "adv"]
        return evs

    # Defined here, not only forwarded: the engine deals ahead (lookahead) only for a world
    # whose class has both methods, and the bench measures the run as a user's would be.
    def next_turn_after(self, t_us: int) -> int | None:
        turn: int | None = self._world.next_turn_after(t_us)
        return turn

    def adverts_between(self, lo_us: int, hi_us: int) -> list[tuple[Any, ...]]:
        evs = self._world.adverts_between(lo_us, hi_us)
        self.adverts += evs
        return evs


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _day(board_name: str, scenario: str, record: bool = False) -> tuple[dict[str, Any], Any]:
    board = load_board(board_name)
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp)
        prepare_flash(board, flash, firmware=paths.FIRMWARE)
        world: Any = make_world(board, scenario, 1, None)
        if record:
            world = _Recorder(world)
        emu = EmulatedBoard(
            board, flash, world=world, seed=1, entry="sensor.app", instance=f"bench-{scenario}"
        )
        c0, t0 = _cpu(), time.perf_counter()
        stats = emu.run(duration_us=DAY_US)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {
        "board": board_name,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "simulated_s": stats.sim_us / 1e6,
        "heap_peak_bytes": stats.heap_peak,
        "ram_budget_bytes": board.ram_budget,
        "ram_goal_bytes": board.ram_goal,
        "host_round_trips": stats.requests,
        "i2c_answered_by_runner": stats.i2c_local,
        "events": stats.events,
    }, world


def _floor(adverts: list[tuple[Any, ...]]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "adverts.bin"
        out = bytearray()
        for ev in adverts:
            _, _, addr_type, addr, _, rssi, data = ev
            out += bytes((addr_type, rssi & 0xFF, len(data))) + bytes(addr) + bytes(data)
        f.write_bytes(bytes(out))
        r = subprocess.run(
            [paths.node_binary(), str(paths.ROOT / "benchmarks" / "firmware_floor.mjs"),
             str(paths.FIRMWARE), str(f)],
            capture_output=True, text=True, check=True, timeout=3600,
        )  # fmt: skip
    return dict(json.loads(r.stdout))


def emulator_day() -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for name in ("esp32-devkitc", "pico-w"):
        res, _ = _day(name, "residential")
        res["goal_cpu_s"] = RESIDENTIAL_GOAL_CPU_S
        res["meets_goal"] = res["cpu_s"] <= RESIDENTIAL_GOAL_CPU_S
        plaza, world = _day(name, "plaza", record=True)
        floor = _floor(world.adverts)
        plaza["firmware_floor_cpu_s"] = round(floor["on_advert_s"], 2)
        plaza["adverts_replayed"] = floor["adverts"]
        ratio = plaza["cpu_s"] / max(1e-9, floor["on_advert_s"])
        plaza["ratio_to_floor"] = round(ratio, 1)
        plaza["goal_ratio"] = PLAZA_GOAL_RATIO
        plaza["meets_goal"] = ratio <= PLAZA_GOAL_RATIO
        runs[name] = {"residential": res, "plaza": plaza}
    return {
        "runs": runs,
        "note": "CPU seconds of the engine and its Node VM for 24 simulated hours in bench "
        "mode; the plaza floor is the firmware's on_advert alone over the same adverts in the "
        "same MicroPython build",
    }
