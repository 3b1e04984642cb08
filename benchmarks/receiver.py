"""Receiver throughput: frames verified, decrypted and stored in SQLite per second, one core.

Frames are sealed by the device's own sealer (firmware/sensor/sealer.py under CPython), from
records shaped as the firmware's privacy gate builds them (docs/device.md). The figure covers
the whole pipeline of ``Receiver.submit_many``: size guard, envelope parse, key lookup (a dict),
replay window read from the store, AES-CCM decrypt, record decode, and the reading plus the
advanced window written to a WAL-mode SQLite file, committed every ``batch`` frames.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from atsource import keys, paths
from atsource.frame import KeyEntry
from atsource.receiver import Receiver
from atsource.store import SQLiteStore

GOAL_FPS = 20_000
START = 1_780_272_000  # 2026-06-01T00:00:00Z
POLICY4 = bytes.fromhex("5a3c9e01")

# As sensor.gate builds them: head {0, 1, 2, 7} plus the released values.
ENV_RECORD = {0: START, 1: 900, 2: POLICY4, 7: 1, 3: 2153, 4: 4520, 5: 101325, 8: 900, 9: 0}
COUNT_RECORD = {0: START, 1: 900, 2: POLICY4, 7: 2, 6: 37, 17: 1000}


def _firmware_on_path() -> None:
    for p in (paths.ROOT / "tests" / "support", paths.FIRMWARE):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


class _Counter:
    def __init__(self, start: int) -> None:
        self.value = start

    def next(self) -> int:
        self.value += 1
        return self.value - 1


def _frames(kid: bytes, key: bytes, iv: bytes, record: dict[int, Any], n: int, start: int = 0):
    _firmware_on_path()
    from sensor import cbor, sealer

    s = sealer.Sealer(kid, key, iv, _Counter(start))
    return [s.seal(sealer.pad(cbor.dumps(record))) for _ in range(n)]


def _run(frames: list[bytes], lookup: Any, batch: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.db")
        rx = Receiver(store, lookup)
        t0 = time.perf_counter()
        results = rx.submit_many(frames, "bench", batch=batch)
        dt = time.perf_counter() - t0
        stored = store.count()
        store.close()
    assert all(r.accepted for r in results) and stored == len(frames)
    return dt, stored


def receiver_throughput(n: int = 20_000) -> dict[str, Any]:
    """Frames per second through the receiver into SQLite, per batch size; frame sizes."""
    kid = keys.make_kid(7, 1)
    key, iv = keys.derive(bytes(range(16)), kid)
    entry = KeyEntry(key, iv)

    def lookup(k: bytes) -> KeyEntry | None:
        return entry if k == kid else None

    # Counters past 255 so the piv is 2 bytes, as it is for most of a device's life.
    frames = _frames(kid, key, iv, ENV_RECORD, n, start=1000)
    env_frame = frames[0]
    count_frame = _frames(kid, key, iv, COUNT_RECORD, 1, start=1000)[0]
    fps: dict[str, int] = {}
    for batch in (1, 50, 500):
        dt, _ = _run(frames, lookup, batch)
        fps[f"batch_{batch}"] = round(n / dt)
    return {
        "frames": n,
        "frames_per_s": fps,
        "goal_frames_per_s": GOAL_FPS,
        "meets_goal": fps["batch_500"] >= GOAL_FPS,
        "env_record_frame_bytes": len(env_frame),
        "count_record_frame_bytes": len(count_frame),
        "frame_size_goal_bytes": 51,
        "note": "one core, WAL, synchronous=NORMAL; batch_N commits every N frames "
        "(batch_1 = one transaction per frame); piv of 2 bytes",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(receiver_throughput(), indent=2))
