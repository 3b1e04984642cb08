"""`atsource emulate --fleet N`: N emulated boards living the same span of a scenario at once.

Each board runs in its own worker process (a board is one Python engine and one Node VM, so
one process per core keeps the cores busy without oversubscribing them), on its own flash
directory with the repository firmware, in bench mode, with its own seed (the fleet's seed plus
its index), so a fleet run is reproducible board by board. Boards alternate between the kinds
asked for. The figure that matters for a fleet is boards x simulated days per wall minute.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DAY_S = 86_400


@dataclass(frozen=True)
class FleetMember:
    index: int
    board: str
    scenario: str
    seed: int


@dataclass
class BoardRun:
    """What one board did (returned from its worker process)."""

    index: int
    board: str
    scenario: str
    seed: int
    simulated_s: float
    wall_s: float
    cpu_s: float  # the worker process and its Node VM
    heap_peak: int
    ram_budget: int
    resets: int
    lines: int
    error: str | None = None


@dataclass
class FleetResult:
    boards: list[BoardRun]
    workers: int
    wall_s: float

    @property
    def board_days(self) -> float:
        return sum(b.simulated_s for b in self.boards if b.error is None) / DAY_S

    @property
    def board_days_per_minute(self) -> float:
        return self.board_days / (self.wall_s / 60) if self.wall_s > 0 else 0.0

    @property
    def failed(self) -> list[BoardRun]:
        return [b for b in self.boards if b.error is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "boards": len(self.boards),
            "failed": len(self.failed),
            "workers": self.workers,
            "wall_s": round(self.wall_s, 2),
            "board_days": round(self.board_days, 3),
            "board_days_per_minute": round(self.board_days_per_minute, 2),
            "cpu_s": round(sum(b.cpu_s for b in self.boards), 1),
            "runs": [asdict(b) for b in self.boards],
        }


def members(n: int, boards: list[str], scenario: str, seed: int) -> list[FleetMember]:
    """N boards alternating between the kinds given, seeds seed, seed+1, ..."""
    return [FleetMember(i, boards[i % len(boards)], scenario, seed + i) for i in range(n)]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


def run_member(m: FleetMember, duration_us: int | None) -> BoardRun:
    """One board's run (in a worker process)."""
    from .. import paths
    from ..boards import load_board
    from .api import make_world, prepare_flash
    from .engine import EmulatedBoard

    board = load_board(m.board)
    cpu0 = time.process_time() + _children_cpu_s()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"atsource-fleet-{m.index}-") as tmp:
        flash = Path(tmp)
        prepare_flash(board, flash, firmware=paths.FIRMWARE)
        world = make_world(board, m.scenario, m.seed, None)
        dur = duration_us if duration_us is not None else world.end_us - world.start_us
        emu = EmulatedBoard(
            board,
            flash,
            world=world,
            seed=m.seed,
            entry="sensor.app",
            instance=f"fleet-{m.index}",
        )
        error = None
        try:
            stats = emu.run(duration_us=dur)
        except Exception as e:  # noqa: BLE001 - reported per board; the fleet carries on
            error = str(e) or type(e).__name__
            stats = emu.stats
        finally:
            emu.close()
    return BoardRun(
        index=m.index,
        board=m.board,
        scenario=m.scenario,
        seed=m.seed,
        simulated_s=stats.sim_us / 1e6,
        wall_s=round(time.perf_counter() - t0, 3),
        cpu_s=round(time.process_time() + _children_cpu_s() - cpu0, 3),
        heap_peak=stats.heap_peak,
        ram_budget=board.ram_budget,
        resets=len(stats.resets),
        lines=len(emu.lines),
        error=error,
    )


def run_fleet(
    fleet: list[FleetMember],
    duration_us: int | None,
    *,
    workers: int | None = None,
    on_done: Callable[[BoardRun], None] | None = None,
) -> FleetResult:
    """Run every member, ``workers`` at a time (default: one per core)."""
    n = max(1, min(workers or default_workers(), len(fleet)))
    t0 = time.perf_counter()
    done: list[BoardRun] = []
    with ProcessPoolExecutor(max_workers=n) as pool:
        pending: set[Future[BoardRun]] = {pool.submit(run_member, m, duration_us) for m in fleet}
        for fut in as_completed(pending):
            run = fut.result()
            done.append(run)
            if on_done is not None:
                on_done(run)
    done.sort(key=lambda r: r.index)
    return FleetResult(done, n, time.perf_counter() - t0)
