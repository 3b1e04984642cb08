"""`make bench`: measure, print and write bench-results/bench.json. Figures, not pass/fail.

Each benchmark is a function returning a dict of figures; add new ones to BENCHMARKS.
`python -m benchmarks.run NAME...` runs only the named ones (still writing bench.json).
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

from atsource import firmware_build, paths
from atsource.boards import board_names, load_board

from benchmarks.accuracy import people_accuracy
from benchmarks.emulator_days import emulator_day
from benchmarks.host_tools import deploy_times, provision_times
from benchmarks.receiver import receiver_throughput
from benchmarks.senses import noise_cost
from benchmarks.timing import (
    bme280_inversion,
    cli_startup,
    demo_time,
    fleet_residential,
    world_generation,
)
from benchmarks.uplink import counter_writes, device_sealing

OUT = paths.ROOT / "bench-results" / "bench.json"
BUNDLE_GOAL_BYTES = 64 * 1024


def serial_port() -> dict[str, Any]:
    """mpremote over an emulated board's pty: fs cp throughput and exec round trips."""
    import subprocess

    from atsource.emulator.api import serve_board
    from mpremote.transport_serial import SerialTransport

    size = 64 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "blob.bin"
        src.write_bytes(bytes(range(256)) * (size // 256))
        flash = Path(tmp) / "flash"
        with serve_board("pico-w", flash) as board:
            t0 = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mpremote",
                    "connect",
                    board.port,
                    "fs",
                    "cp",
                    str(src),
                    ":blob.bin",
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            cp_s = time.perf_counter() - t0
            t = SerialTransport(board.port, baudrate=115200)
            try:
                t.enter_raw_repl()
                n = 50
                t1 = time.perf_counter()
                for i in range(n):
                    t.exec(f"x = {i}")
                exec_ms = (time.perf_counter() - t1) / n * 1000
                t.exit_raw_repl()
            finally:
                t.close()
    return {
        "fs_cp_bytes": size,
        "fs_cp_s": round(cp_s, 3),
        "fs_cp_bytes_per_s": round(size / cp_s),
        "exec_round_trip_ms": round(exec_ms, 2),
        "note": "fs_cp includes mpremote start-up and the soft reset on connect",
    }


def firmware_bundle(top: int = 5) -> dict[str, Any]:
    """The firmware as deployed, per board: total .mpy bytes (goal under 64 KB), the whole
    image (with main.py and board.json), and the largest modules."""
    runs: dict[str, Any] = {}
    for name in board_names():
        image = firmware_build.build(load_board(name))
        mpy = {path: len(data) for path, data in image.items() if path.endswith(".mpy")}
        total = sum(mpy.values())
        largest = sorted(mpy.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        runs[name] = {
            "mpy_files": len(mpy),
            "mpy_bytes": total,
            "image_files": len(image),
            "image_bytes": sum(len(d) for d in image.values()),
            "meets_goal": total < BUNDLE_GOAL_BYTES,
            "largest": dict(largest),
        }
    return {
        "runs": runs,
        "goal_mpy_bytes": BUNDLE_GOAL_BYTES,
        "note": "mpy-cross 1.29 output as `atsource deploy` copies it; file sizes, not the "
        "RAM the loaded modules take",
    }


BENCHMARKS: dict[str, Callable[[], dict[str, Any]]] = {
    "firmware_bundle": firmware_bundle,
    "emulator_day": emulator_day,
    "serial_port": serial_port,
    "device_sealing": device_sealing,
    "counter_writes": counter_writes,
    "receiver_throughput": receiver_throughput,
    "deploy_times": deploy_times,
    "provision_times": provision_times,
    "people_accuracy": people_accuracy,
    "bme280_inversion": bme280_inversion,
    "world_generation": world_generation,
    "cli_startup": cli_startup,
    "fleet_residential": fleet_residential,
    "demo_time": demo_time,
    "noise_cost": noise_cost,
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
