"""`make bench`: measure, print and write bench-results/bench.json. Figures, not pass/fail.

Each benchmark is a function returning a dict of figures; add new ones to BENCHMARKS.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from atsource import paths
from atsource.boards import load_board
from atsource.emulator.api import make_world, prepare_flash
from atsource.emulator.engine import EmulatedBoard

DAY_US = 86_400 * 1_000_000
OUT = paths.ROOT / "bench-results" / "bench.json"


def _plaza_day(board_name: str) -> dict[str, Any]:
    board = load_board(board_name)
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp)
        prepare_flash(board, flash, firmware=paths.FIRMWARE)
        world = make_world(board, "plaza", 1, None)
        emu = EmulatedBoard(board, flash, world=world, seed=1, entry="sensor.app")
        t0 = time.perf_counter()
        stats = emu.run(duration_us=DAY_US)
        wall = time.perf_counter() - t0
    return {
        "board": board_name,
        "simulated_s": stats.sim_us / 1e6,
        "wall_s": round(wall, 3),
        "sim_s_per_wall_s": round(stats.sim_us / 1e6 / wall, 1),
        "heap_peak_bytes": stats.heap_peak,
        "ram_budget_bytes": board.ram_budget,
        "ram_goal_bytes": board.ram_goal,
        "requests": stats.requests,
        "events": stats.events,
    }


def emulator_day() -> dict[str, Any]:
    """A simulated day of the plaza scenario on each board: speed and peak live heap."""
    runs = {name: _plaza_day(name) for name in ("pico-w", "esp32-devkitc")}
    return {
        "runs": runs,
        "target": "24 simulated hours of one board in under 10 s of wall time",
    }


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "emulator_day": emulator_day,
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"bench: unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
        return 2
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.machine()},
        "results": {},
    }
    for name in chosen:
        print(f"bench: {name} ...", flush=True)
        report["results"][name] = BENCHMARKS[name]()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))
    print(f"bench: written to {OUT.relative_to(paths.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
