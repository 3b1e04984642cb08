"""Where the receiver keeps readings and per-device replay state (docs/receiver.md).

``Storage`` is the small interface the receiver needs, so a PostgreSQL store can follow;
``SQLiteStore`` is the default: one file, WAL mode. Schema (version 1):

    meta(key TEXT PRIMARY KEY, value TEXT)            -- schema_version
    devices(kid BLOB PRIMARY KEY,                     -- 5 bytes: device number, generation
            highest INTEGER NOT NULL DEFAULT -1,      -- replay window: highest piv accepted
            bitmap INTEGER NOT NULL DEFAULT 0,        -- bit i: highest - i accepted
            accepted INTEGER NOT NULL DEFAULT 0,      -- readings stored for this kid
            bad_tags INTEGER NOT NULL DEFAULT 0,      -- frames whose CCM tag failed
            last_accepted REAL)                       -- Unix time of the last reading
    rejections(reason TEXT PRIMARY KEY, count INTEGER NOT NULL)
    readings(id INTEGER PRIMARY KEY,
             kid BLOB NOT NULL, device INTEGER NOT NULL, generation INTEGER NOT NULL,
             piv INTEGER NOT NULL,                    -- the frame's message counter
             received REAL NOT NULL,                  -- Unix time the receiver stored it
             source TEXT NOT NULL,                    -- e.g. mqtt:atsource/up, file:day.hex
             stream INTEGER, window_start INTEGER, window_length INTEGER,  -- record keys 7, 0, 1
             record BLOB NOT NULL,                    -- the record, canonical CBOR
             UNIQUE (kid, piv))
    kid_keys(kid BLOB PRIMARY KEY, key_hash BLOB)   -- fingerprint of the key kid's readings
                                                     -- were opened with ("kid-reused")

``accept`` checks the piv against the window *read inside the transaction*, stores the reading
and writes the advanced window in one ``BEGIN IMMEDIATE`` transaction, so several receivers
(processes or threads, each with its own store object) can share one file without ever
accepting a frame twice. ``transaction()`` groups many accepts and rejects into one commit (for
throughput); each frame still either stores its reading and advances the window, or does
neither, because the insert comes before the window update and a frame that fails its checks
writes nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cbor2

from .errors import UserError
from .frame import FrameRejected, ReplayWindow

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    kid BLOB PRIMARY KEY,
    highest INTEGER NOT NULL DEFAULT -1,
    bitmap INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    bad_tags INTEGER NOT NULL DEFAULT 0,
    last_accepted REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    kid BLOB NOT NULL,
    device INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    piv INTEGER NOT NULL,
    received REAL NOT NULL,
    source TEXT NOT NULL,
    stream INTEGER,
    window_start INTEGER,
    window_length INTEGER,
    record BLOB NOT NULL,
    UNIQUE (kid, piv)
);
CREATE TABLE IF NOT EXISTS kid_keys (kid BLOB PRIMARY KEY, key_hash BLOB NOT NULL) WITHOUT ROWID;
"""

_I64 = (1 << 63) - 1


class StoreError(UserError):
    """The store could not be opened or written (locked, full, not a database...)."""


@dataclass(slots=True)
class Reading:
    kid: bytes
    piv: int
    record: dict[int, Any]
    received: float = field(default_factory=time.time)
    source: str = ""
    id: int | None = None

    @property
    def device(self) -> int:
        return int.from_bytes(self.kid[:4], "big")

    @property
    def generation(self) -> int:
        return self.kid[4] if len(self.kid) > 4 else 0


@dataclass
class StoreStats:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    devices: dict[bytes, dict[str, Any]] = field(default_factory=dict)


class Storage(Protocol):
    """What the receiver needs from a store. All methods may raise StoreError."""

    def window(self, kid: bytes) -> ReplayWindow:
        """The persisted replay window of kid (a fresh one if never seen)."""
        ...

    def accept(self, reading: Reading) -> int:
        """Check reading.piv against kid's window and, in one transaction, store the reading and
        advance the window; return the reading id. FrameRejected('replay'/'too-old') if the
        window refuses it (then nothing is written)."""
        ...

    def reject(self, reason: str, kid: bytes | None = None) -> None:
        """Count one rejection (and a failed tag against kid)."""
        ...

    def transaction(self) -> Any:
        """A context manager grouping accepts and rejects into one commit."""
        ...

    def stats(self) -> StoreStats: ...

    def count(self) -> int:
        """The number of stored readings."""
        ...

    def readings(self, after_id: int = 0) -> Iterator[Reading]: ...

    def has_reading(self, kid: bytes, piv: int) -> bool:
        """Whether the reading of (kid, piv) is stored (a resend is then a duplicate)."""
        ...

    def key_hash(self, kid: bytes) -> bytes | None:
        """The fingerprint of the key kid's readings were opened with, None if none yet."""
        ...

    def bind_key(self, kid: bytes, key_hash: bytes) -> None:
        """Record kid's key fingerprint if none is recorded (in the open transaction)."""
        ...

    def close(self) -> None: ...


def _col(v: Any) -> int | None:
    """A record value for an INTEGER column; SQLite integers are signed 64-bit."""
    return v if type(v) is int and -_I64 - 1 <= v <= _I64 else None


class SQLiteStore:
    """The default store: one SQLite file in WAL mode (``:memory:`` for tests)."""

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0) -> None:
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Transactions are explicit (BEGIN IMMEDIATE); one store object serves one thread
            # at a time, possibly not the one that opened it (the MQTT loop).
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=busy_timeout_s, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a commit survives a process crash; a power cut may lose the
            # last commits, never the database's consistency (reading and window stay paired).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreError(f"{self.path}: schema version {row[0]}, expected {SCHEMA_VERSION}")
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {self.path}: {e}") from None
        self._depth = 0
        # Windows read or written inside the open BEGIN IMMEDIATE transaction: no other writer
        # can change them before it ends, so a batch reads each kid's window once.
        self._tx_windows: dict[bytes, ReplayWindow] = {}

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE .. COMMIT (ROLLBACK on an exception); nested calls join the outer."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._tx_windows.clear()
            self._rollback()
            raise
        self._depth = 0
        self._tx_windows.clear()
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            raise StoreError(f"store {self.path}: {e}") from None

    def _rollback(self) -> None:
        # SQLite may already have rolled back by itself (disk full, I/O error).
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    # --- replay state and readings ------------------------------------------------------------

    def window(self, kid: bytes) -> ReplayWindow:
        if self._depth:
            w = self._tx_windows.get(kid)
            if w is None:
                w = self._tx_windows[kid] = self._read_window(kid)
            return ReplayWindow(w.highest, w.bitmap)
        return self._read_window(kid)

    def _read_window(self, kid: bytes) -> ReplayWindow:
        try:
            row = self._db.execute(
                "SELECT highest, bitmap FROM devices WHERE kid = ?", (kid,)
            ).fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None
        return ReplayWindow(row[0], row[1]) if row else ReplayWindow()

    def accept(self, reading: Reading) -> int:
        r = reading.record
        with self.transaction():
            w = self.window(reading.kid)
            w.accept(reading.piv)  # FrameRejected: nothing written in this frame
            try:
                cur = self._db.execute(
                    "INSERT INTO readings (kid, device, generation, piv, received, source,"
                    " stream, window_start, window_length, record)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        reading.kid,
                        reading.device,
                        reading.generation,
                        reading.piv,
                        reading.received,
                        reading.source,
                        _col(r.get(7)),
                        _col(r.get(0)),
                        _col(r.get(1)),
                        cbor2.dumps(r, canonical=True),
                    ),
                )
            except sqlite3.Error as e:
                if getattr(e, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_UNIQUE":
                    # (kid, piv) already stored although the window allowed it: only possible
                    # if the window row was lost or edited. Never store a frame twice.
                    raise FrameRejected("replay", reading.kid) from None
                raise StoreError(f"store {self.path}: {e}") from None
            try:
                self._db.execute(
                    "INSERT INTO devices (kid, highest, bitmap, accepted, last_accepted)"
                    " VALUES (?, ?, ?, 1, ?) ON CONFLICT (kid) DO UPDATE SET"
                    " highest = excluded.highest, bitmap = excluded.bitmap,"
                    " accepted = accepted + 1, last_accepted = excluded.last_accepted",
                    (reading.kid, w.highest, w.bitmap, reading.received),
                )
            except sqlite3.Error as e:
                raise StoreError(f"store {self.path}: {e}") from None
            self._tx_windows[reading.kid] = w
            rowid = cur.lastrowid
        assert rowid is not None
        return rowid

    def reject(self, reason: str, kid: bytes | None = None) -> None:
        try:
            with self.transaction():
                self._db.execute(
                    "INSERT INTO rejections VALUES (?, 1)"
                    " ON CONFLICT (reason) DO UPDATE SET count = count + 1",
                    (reason,),
                )
                if reason == "bad-tag" and kid is not None:
                    self._db.execute(
                        "INSERT INTO devices (kid, bad_tags) VALUES (?, 1)"
                        " ON CONFLICT (kid) DO UPDATE SET bad_tags = bad_tags + 1",
                        (kid,),
                    )
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None

    # --- reading back -------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        try:
            rejected = dict(self._db.execute("SELECT reason, count FROM rejections").fetchall())
            devices = {
                bytes(kid): {"accepted": acc, "bad_tags": bad, "highest": hi, "last_accepted": la}
                for kid, acc, bad, hi, la in self._db.execute(
                    "SELECT kid, accepted, bad_tags, highest, last_accepted FROM devices"
                    " ORDER BY kid"
                )
            }
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None
        accepted = sum(d["accepted"] for d in devices.values())
        return StoreStats(accepted, rejected, devices)

    def readings(self, after_id: int = 0) -> Iterator[Reading]:
        """Stored readings in id (arrival) order."""
        try:
            cur = self._db.execute(
                "SELECT id, kid, piv, received, source, record FROM readings WHERE id > ?"
                " ORDER BY id",
                (after_id,),
            )
            for rid, kid, piv, received, source, rec in cur:
                yield Reading(bytes(kid), piv, cbor2.loads(rec), received, source, rid)
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM readings").fetchone()[0])

    # --- duplicates and key bindings (issue 15) ----------------------------------------------

    def has_reading(self, kid: bytes, piv: int) -> bool:
        try:
            row = self._db.execute(
                "SELECT 1 FROM readings WHERE kid = ? AND piv = ?", (kid, piv)
            ).fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None
        return row is not None

    def key_hash(self, kid: bytes) -> bytes | None:
        try:
            row = self._db.execute("SELECT key_hash FROM kid_keys WHERE kid = ?", (kid,)).fetchone()
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None
        return None if row is None else bytes(row[0])

    def bind_key(self, kid: bytes, key_hash: bytes) -> None:
        try:
            with self.transaction():
                self._db.execute("INSERT OR IGNORE INTO kid_keys VALUES (?, ?)", (kid, key_hash))
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None

    def device_numbers(self) -> set[int]:
        """Device numbers with at least one accepted reading (provisioning skips them)."""
        try:
            rows = self._db.execute("SELECT kid FROM devices WHERE accepted > 0").fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"store {self.path}: {e}") from None
        return {int.from_bytes(bytes(r[0])[:4], "big") for r in rows}

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
