"""Receiver throughput: frames verified, decrypted and stored per CPU-second (one core).

Frames are sealed by the device's own sealer (firmware/sensor/sealer.py under CPython), from
records shaped as the firmware's privacy gate builds them (docs/device.md). The figure covers
the whole pipeline of ``Receiver.submit_many``: size guard, envelope parse, key lookup (a dict),
replay window read from the store, AES-CCM decrypt, record decode, and the reading plus the
advanced window written to a WAL-mode SQLite file, committed every ``batch`` frames.

Beside it, in the same run, the floor: only AES-CCM decryption of the same frames (nonce and
AAD prepared beforehand) and a batched ``executemany`` of the same rows into the same table.
The ratio receiver / floor is the figure to watch (the machine's speed cancels out). Times are
CPU time of this process (``time.process_time``, so other load on a shared machine does not
count), the median of ``repeat`` runs. With a PostgreSQL server at hand (``pg_ctl`` on PATH or
in /usr/lib/postgresql) the same pipeline into a throwaway server is measured too.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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


def _run(frames: list[bytes], lookup: Any, batch: int, store: Any = None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        if store is None:
            store = SQLiteStore(Path(tmp) / "bench.db")
        rx = Receiver(store, lookup)
        t0 = time.process_time()
        results = rx.submit_many(frames, "bench", batch=batch)
        dt = time.process_time() - t0
        stored = store.count()
        store.close()
    assert all(r.accepted for r in results) and stored == len(frames)
    return dt, stored


def _floor(frames: list[bytes], key: bytes, iv: bytes, batch: int) -> float:
    """Decrypt-and-insert: AES-CCM on each frame and executemany of the same rows."""
    import sqlite3

    from atsource.frame import _header, enc_structure, external_aad, make_nonce
    from atsource.store import canonical_record
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    prepared = []
    for f in frames:
        kid, piv, ct = _header(f)
        prepared.append((kid, piv, make_nonce(iv, piv), enc_structure(external_aad(kid, piv)), ct))
    rec = canonical_record(ENV_RECORD)
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "floor.db")  # the same schema and pragmas
        store.close()
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        ccm = AESCCM(key, tag_length=8)
        t0 = time.process_time()
        for i in range(0, len(prepared), batch):
            rows = []
            for kid, piv, nonce, aad, ct in prepared[i : i + batch]:
                ccm.decrypt(nonce, ct, aad)
                p = int.from_bytes(piv, "big")
                rows.append((kid, 7, 1, p, 0.0, "bench", 1, START, 900, POLICY4, rec))
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO readings (kid, device, generation, piv, received, source,"
                " stream, window_start, window_length, policy, record)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("COMMIT")
        dt = time.process_time() - t0
        assert db.execute("SELECT count(*) FROM readings").fetchone()[0] == len(frames)
        db.close()
    return dt


def _median_fps(n: int, runs: Callable[[], float], repeat: int) -> int:
    return round(n / statistics.median(runs() for _ in range(repeat)))


def receiver_throughput(n: int = 20_000, repeat: int = 5) -> dict[str, Any]:
    """Frames per CPU-second through the receiver into SQLite, per batch size, beside the
    decrypt-and-insert floor; the PostgreSQL store beside them when a server can be started."""
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
        fps[f"batch_{batch}"] = _median_fps(
            n, lambda b=batch: _run(frames, lookup, b)[0], 1 if batch == 1 else repeat
        )
    floor = _median_fps(n, lambda: _floor(frames, key, iv, 500), repeat)
    out: dict[str, Any] = {
        "frames": n,
        "frames_per_s": fps,
        "floor_frames_per_s": floor,
        "floor_over_receiver": round(floor / fps["batch_500"], 2),
        "goal_frames_per_s": GOAL_FPS,
        "meets_goal": fps["batch_500"] >= GOAL_FPS,
        "env_record_frame_bytes": len(env_frame),
        "count_record_frame_bytes": len(count_frame),
        "frame_size_goal_bytes": 51,
        "note": "frames per CPU-second of this process, median of runs; WAL, "
        "synchronous=NORMAL; batch_N commits every N frames (batch_1 = one transaction per "
        "frame); piv of 2 bytes; floor = AES-CCM decrypt + executemany of the same rows, "
        "batches of 500",
    }
    out["postgresql"] = _postgres_throughput(frames[:5000], lookup)
    return out


def _postgres_throughput(frames: list[bytes], lookup: Any) -> dict[str, Any]:
    """The same pipeline into a throwaway PostgreSQL server on loopback, fsync on (CPU time of
    the receiver process only: the server's own CPU is not in it, so wall time is given too;
    5,000 frames, so a commit per frame stays short)."""
    _firmware_on_path()
    from atsource.store_pg import PostgresStore
    from postgres_server import PostgresUnavailable, fresh_database, postgres_server

    try:
        with postgres_server(durable=True) as url:
            res: dict[str, Any] = {}
            for batch in (1, 500):
                store = PostgresStore(fresh_database(url, f"bench{batch}"))
                w0 = time.perf_counter()
                dt, _ = _run(frames, lookup, batch, store)
                wall = time.perf_counter() - w0
                res[f"batch_{batch}"] = {
                    "frames_per_cpu_s": round(len(frames) / dt),
                    "frames_per_wall_s": round(len(frames) / wall),
                }
            res["frames"] = len(frames)
            return res
    except PostgresUnavailable as e:
        return {"skipped": str(e)}


if __name__ == "__main__":
    import json

    print(json.dumps(receiver_throughput(), indent=2))
