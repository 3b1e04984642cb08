"""Speed checks that used to be timed assertions in unit tests (a test must not fail because
the machine is busy): each figure comes with its goal and a floor measured in the same run
on the same machine, so a slow machine shows as a slow floor, not as a failed goal.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from atsource import paths

INVERSION_GOAL_US = 300.0  # was test_inversion_is_fast: about 100 us on a laptop
WORLD_GOAL_CPU_S = 5.0  # was the bound in test_plaza_day: about 0.3 s on a laptop-class core


def _best_per_call(fn: Callable[[], None], calls: int, rounds: int = 3) -> float:
    """Best of ``rounds`` CPU-time measurements of ``calls`` calls, in microseconds per call
    (process time: another process on the machine does not inflate it)."""
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        fn()
        best = min(best, (time.process_time() - t) / calls)
    return best * 1e6


def bme280_inversion() -> dict[str, Any]:
    """The BME280 model finds raw ADC words for a temperature, humidity and pressure (an
    inversion of the datasheet's compensation). Floor: one forward compensation of all three
    values, the unit step the inversion repeats."""
    from atsource.emulator.bme280_model import (
        DEFAULT_CALIBRATION,
        compensate_h,
        compensate_p,
        compensate_t,
        raw_from_environment,
    )

    rng = random.Random(7)
    inputs = [
        (rng.uniform(-30, 60), rng.uniform(5, 95), rng.uniform(80000, 105000)) for _ in range(300)
    ]
    cal = DEFAULT_CALIBRATION
    raws = [raw_from_environment(t, h, p, cal) for t, h, p in inputs]

    def invert() -> None:
        raw_from_environment.cache_clear()
        for t_c, h_rh, p_pa in inputs:
            raw_from_environment(t_c, h_rh, p_pa, cal)

    def forward() -> None:
        for adc_t, adc_p, adc_h in raws:
            _, t_fine = compensate_t(adc_t, cal)
            compensate_p(adc_p, t_fine, cal)
            compensate_h(adc_h, t_fine, cal)

    inv = _best_per_call(invert, len(inputs))
    floor = _best_per_call(forward, len(raws), rounds=5)
    return {
        "inversion_us": round(inv, 1),
        "goal_us": INVERSION_GOAL_US,
        "meets_goal": inv < INVERSION_GOAL_US,
        "floor_forward_us": round(floor, 2),
        "ratio_to_floor": round(inv / floor, 1) if floor else None,
        "note": "CPU time per call, best of 3; the floor is one forward compensation",
    }


def world_generation() -> dict[str, Any]:
    """Building the plaza scenario's world for a day (people, phones, adverts planned ahead).
    Floor: building the quiet residential world in the same run."""
    from atsource.boards import load_board
    from atsource.emulator.scenario import load_scenario
    from atsource.emulator.world import ScenarioWorld

    board = load_board("pico-w").raw

    def build(name: str) -> float:
        sc = load_scenario(paths.SCENARIOS / f"{name}.toml")
        t = time.process_time()
        ScenarioWorld(sc, board)
        return time.process_time() - t

    plaza = min(build("plaza") for _ in range(2))
    floor = min(build("residential") for _ in range(2))
    return {
        "plaza_cpu_s": round(plaza, 3),
        "goal_cpu_s": WORLD_GOAL_CPU_S,
        "meets_goal": plaza < WORLD_GOAL_CPU_S,
        "floor_residential_cpu_s": round(floor, 3),
        "note": "CPU seconds to build the world, best of 2",
    }


CLI_GOAL_S = 0.3  # issue 14: `atsource --help` and `--version`
DEPLOY_NOOP_GOAL_S = 1.0  # issue 14: `atsource deploy` with nothing to copy, emulated board


def cli_startup(runs: int = 7) -> dict[str, Any]:
    """Wall time of `atsource --version` and `atsource --help` as a user starts them (a new
    Python process each). Floor: `python -c pass` in the same run, the interpreter alone."""
    import statistics
    import subprocess
    import sys

    def wall(args: list[str]) -> list[float]:
        out = []
        for _ in range(runs):
            t = time.perf_counter()
            subprocess.run(args, capture_output=True, check=True)
            out.append(time.perf_counter() - t)
        return out

    exe = [sys.executable, "-m", "atsource.cli"]
    floor = wall([sys.executable, "-c", "pass"])
    res: dict[str, Any] = {}
    for name, args in (("version", [*exe, "--version"]), ("help", [*exe, "--help"])):
        w = wall(args)
        res[f"{name}_best_s"] = round(min(w), 3)
        res[f"{name}_median_s"] = round(statistics.median(w), 3)
        res[f"{name}_meets_goal"] = statistics.median(w) < CLI_GOAL_S
    res.update(
        {
            "goal_s": CLI_GOAL_S,
            "floor_python_median_s": round(statistics.median(floor), 3),
            "note": f"wall time of a new process, {runs} runs each; the floor is the bare "
            "interpreter's start-up on the same machine in the same run",
        }
    )
    return res


FLEET_GOAL_BOARD_DAYS_PER_MIN = 25.0  # issue 14: 50 boards for a day in two minutes


def fleet_residential(span_h: float = 6.0) -> dict[str, Any]:
    """`atsource emulate --fleet`: two boards per core (both kinds in turn) on the residential
    scenario for ``span_h`` hours each, in parallel processes; boards x simulated day per wall
    minute. Floor: one esp32 board alone in the same run, times the cores (perfect scaling)."""
    from atsource.emulator.fleet import default_workers, members, run_fleet

    span_us = int(span_h * 3600 * 1e6)
    cores = default_workers()
    single = run_fleet(members(1, ["esp32-devkitc"], "residential", 1), span_us, workers=1)
    fleet = run_fleet(members(2 * cores, ["esp32-devkitc", "pico-w"], "residential", 1), span_us)
    ideal = single.board_days_per_minute * cores
    rate = fleet.board_days_per_minute
    return {
        "boards": len(fleet.boards),
        "failed": len(fleet.failed),
        "span_h": span_h,
        "workers": fleet.workers,
        "wall_s": round(fleet.wall_s, 2),
        "cpu_s_per_board_day": {
            kind: round(
                sum(b.cpu_s for b in fleet.boards if b.board == kind)
                / max(1e-9, sum(b.simulated_s for b in fleet.boards if b.board == kind) / 86_400),
                1,
            )
            for kind in ("esp32-devkitc", "pico-w")
        },
        "board_days_per_minute": round(rate, 2),
        "goal_board_days_per_minute": FLEET_GOAL_BOARD_DAYS_PER_MIN,
        "meets_goal": rate >= FLEET_GOAL_BOARD_DAYS_PER_MIN,
        "floor_one_board_x_cores": round(ideal, 2),
        "parallel_efficiency": round(rate / ideal, 2) if ideal else None,
        "note": "bench mode, repository firmware, fresh flash per board; the rate is bound "
        "by the emulator's cost per board (CPU-s per board-day), see issue 14",
    }


DEMO_GOAL_S = 60.0  # issue 14: `make demo`


def demo_time() -> dict[str, Any]:
    """`make demo` as a user runs it (`atsource demo`, a new process, into a fresh folder):
    wall and CPU seconds against the goal."""
    import resource
    import subprocess
    import sys
    import tempfile

    exe = [sys.executable, "-m", "atsource.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        r = subprocess.run(
            [*exe, "demo", "--out", f"{tmp}/demo"], capture_output=True, text=True, timeout=3600
        )
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if r.returncode != 0:  # a figure of its own, with what the demo said (the bench goes on)
        return {"failed": r.returncode, "said": (r.stdout + r.stderr)[-2000:], "wall_s": wall}
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "goal_wall_s": DEMO_GOAL_S,
        "meets_goal": wall <= DEMO_GOAL_S,
        "note": "a new process into a fresh folder, as `make demo`; CPU is the process and "
        "its emulated boards",
    }
