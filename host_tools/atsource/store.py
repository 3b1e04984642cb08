"""Where the receiver keeps readings and per-device replay state (docs/receiver.md).

``Storage`` is the interface the receiver needs. Two stores implement it with the same schema
meaning: ``SQLiteStore`` (the default: one file, WAL mode) and ``PostgresStore``
(``store_pg.py``, for several receiver hosts and analysts on one server). ``open_store(spec)``
picks one from a path or a ``postgresql://`` URL. Schema (version 2):

    meta(key TEXT PRIMARY KEY, value TEXT)            -- schema_version
    devices(kid BLOB PRIMARY KEY,                     -- 5 bytes: device number, generation
            floor INTEGER NOT NULL DEFAULT -1,        -- replay: every piv <= floor is done
            seen BLOB NOT NULL DEFAULT x'',           -- replay: bit i = floor + 1 + i accepted
            highest INTEGER NOT NULL DEFAULT -1,      -- highest piv accepted
            accepted INTEGER NOT NULL DEFAULT 0,      -- readings stored for this kid
            last_accepted REAL,                       -- Unix time of the last reading stored
            last_window_end INTEGER,                  -- newest window_start + window_length
            last_window_length INTEGER,               -- that window's length
            policy BLOB,                              -- policy hash of the newest window
            firmware TEXT)                            -- firmware version, once reported
    device_rejections(kid BLOB, reason TEXT, count INTEGER, PRIMARY KEY (kid, reason))
    rejections(reason TEXT PRIMARY KEY, count INTEGER NOT NULL)
    policies(hash BLOB PRIMARY KEY, receiver_days INTEGER NOT NULL, name TEXT NOT NULL)
    readings(id INTEGER PRIMARY KEY,
             kid BLOB NOT NULL, device INTEGER NOT NULL, generation INTEGER NOT NULL,
             piv INTEGER NOT NULL,                    -- the frame's message counter
             received REAL NOT NULL,                  -- Unix time the receiver stored it
             source TEXT NOT NULL,                    -- e.g. mqtt:atsource/up, file:day.hex
             stream INTEGER, window_start INTEGER, window_length INTEGER,  -- record keys 7, 0, 1
             policy BLOB,                             -- record key 2 (for retention)
             record BLOB NOT NULL,                    -- the record, canonical CBOR
             UNIQUE (kid, piv))
    kid_keys(kid BLOB PRIMARY KEY, key_hash BLOB)   -- fingerprint of the key kid's readings
                                                     -- were opened with ("kid-reused")

``accept`` checks the piv against the window *read inside the transaction*, stores the reading
and writes the advanced window in one transaction, so several receivers (processes, threads or
hosts, each with its own store object) can share one store without ever accepting a frame
twice: SQLite takes the database's write lock (``BEGIN IMMEDIATE``), PostgreSQL the device's
row lock (``SELECT ... FOR UPDATE``). ``transaction()`` groups many accepts and rejects into one
commit (for throughput); within it the device rows and counters are written once, at the end,
and each frame still either stores its reading and advances the window, or does neither.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cbor2

from .errors import UserError
from .frame import FrameRejected, ReplayWindow
from .record import FIELDS

SCHEMA_VERSION = 2
DB_ENV = "ATSOURCE_DB"

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


@dataclass
class DeviceHealth:
    """What the store knows of one kid (``Storage.health``), for `atsource devices list`."""

    kid: bytes
    highest: int
    accepted: int
    last_accepted: float | None
    last_window_end: int | None
    last_window_length: int | None
    policy: bytes | None
    firmware: str | None
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass
class PruneResult:
    deleted: dict[str, int] = field(default_factory=dict)  # policy hash hex -> readings
    kept_unknown_policy: int = 0  # readings naming a policy the store has no retention for

    def as_dict(self) -> dict[str, Any]:
        return {
            "deleted": dict(sorted(self.deleted.items())),
            "deleted_total": sum(self.deleted.values()),
            "kept_unknown_policy": self.kept_unknown_policy,
        }


class Storage(Protocol):
    """What the receiver needs from a store. All methods may raise StoreError."""

    def window(self, kid: bytes) -> ReplayWindow:
        """The persisted replay window of kid (a fresh one if never seen). Inside a
        transaction the device is locked until the commit."""
        ...

    def accept(self, reading: Reading) -> int:
        """Check reading.piv against kid's window and, in one transaction, store the reading and
        advance the window; return the reading id. FrameRejected('replay'/'too-old') if the
        window refuses it (then nothing is written)."""
        ...

    def reject(self, reason: str, kid: bytes | None = None) -> None:
        """Count one rejection (and, for a kid the registry knows, against that kid)."""
        ...

    def transaction(self) -> Any:
        """A context manager grouping accepts and rejects into one commit."""
        ...

    def stats(self) -> StoreStats: ...

    def health(self) -> dict[bytes, DeviceHealth]: ...

    def count(self) -> int:
        """The number of stored readings."""
        ...

    def readings(self, after_id: int = 0) -> Iterator[Reading]: ...

    def set_policy(self, policy_hash: bytes, receiver_days: int, name: str) -> None:
        """Record a policy's retention (policy_hash: the 4 bytes the frames carry)."""
        ...

    def prune(self, now: float | None = None) -> PruneResult:
        """Delete readings older than their policy's receiver_days."""
        ...

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


def canonical_record(r: dict[int, Any]) -> bytes:
    """The record as canonical CBOR (RFC 8949 4.2.1 as cbor2 writes it). A flat record of
    non-negative int keys (every record the firmware builds) only needs its keys sorted, which
    is several times cheaper than cbor2's canonical mode."""
    for k, v in r.items():
        if type(k) is not int or k < 0 or type(v) not in _FLAT:
            return cbor2.dumps(r, canonical=True)
    return cbor2.dumps(dict(sorted(r.items())))


_FLAT = frozenset({int, bytes, str})


def _col(v: Any) -> int | None:
    """A record value for an INTEGER column; SQL integers are signed 64-bit."""
    return v if type(v) is int and -_I64 - 1 <= v <= _I64 else None


@dataclass
class _Dev:
    """A device row touched in the open transaction, written once at its end."""

    window: ReplayWindow
    accepted: int = 0
    last_accepted: float | None = None
    last_window_end: int | None = None
    last_window_length: int | None = None
    policy: bytes | None = None
    firmware: str | None = None


# Record keys copied into columns, by their names in the record schema (record.py).
_KEY = {f.name: f.key for f in FIELDS.values()}
_K_START, _K_LENGTH, _K_POLICY = _KEY["window_start"], _KEY["window_length_s"], _KEY["policy_hash"]
_K_STREAM, _K_FIRMWARE = _KEY["stream"], _KEY["firmware_version"]

# Reasons not counted against the frame's kid: the registry does not know it (hostile input
# must not grow the devices table, nor the metrics' series).
NOT_A_DEVICE = frozenset({"unknown-kid"})


class SQLStore:
    """Everything both SQL stores share; subclasses give the connection, the dialect and the
    locking. SQL is written with ``?`` placeholders (``_sql`` adapts them)."""

    errors: tuple[type[BaseException], ...] = ()
    name = ""

    def __init__(self) -> None:
        self._depth = 0
        # Devices read or written inside the open transaction (locked until it ends).
        self._tx_devs: dict[bytes, _Dev] = {}
        self._tx_rejects: Counter[tuple[str, bytes | None]] = Counter()

    # --- dialect hooks ------------------------------------------------------------------------

    def _sql(self, q: str) -> str:
        return q

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _x(self, q: str, params: tuple[Any, ...] = ()) -> Any:
        raise NotImplementedError

    _INSERT = (
        "INSERT INTO readings (kid, device, generation, piv, received, source,"
        " stream, window_start, window_length, policy, record)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )

    def _insert_reading(self, params: tuple[Any, ...]) -> int | None:
        """Insert one reading; its id, or None when (kid, piv) is already stored."""
        row = self._x(self._INSERT + " ON CONFLICT (kid, piv) DO NOTHING RETURNING id", params)
        found = row.fetchone()
        return None if found is None else int(found[0])

    def _lock_device(self, kid: bytes) -> tuple[Any, ...] | None:
        """The device's (floor, seen) row, locked for the open transaction, or None."""
        return self._x("SELECT floor, seen FROM devices WHERE kid = ?", (kid,)).fetchone()

    def _fail(self, e: BaseException) -> StoreError:
        return StoreError(f"store {self.name}: {str(e).strip().splitlines()[0]}")

    # --- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN .. COMMIT (ROLLBACK on an exception); nested calls join the outer."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        try:
            self._begin()
        except self.errors as e:
            raise self._fail(e) from None
        self._depth = 1
        try:
            yield
            self._flush()
        except BaseException:
            self._depth = 0
            self._tx_devs.clear()
            self._tx_rejects.clear()
            with suppress(*self.errors):
                self._rollback()  # (a connection that is gone rolled back by itself)
            raise
        self._depth = 0
        try:
            self._commit()
        except self.errors as e:
            with suppress(*self.errors):
                self._rollback()
            raise self._fail(e) from None

    def _flush(self) -> None:
        """Write the devices and counters the transaction touched, in kid and reason order (so
        that two writers lock rows in the same order)."""
        devs, rejects = self._tx_devs, self._tx_rejects
        self._tx_devs, self._tx_rejects = {}, Counter()
        try:
            for kid in sorted(devs):
                d = devs[kid]
                if not d.accepted:
                    continue
                w = d.window
                self._x(
                    "INSERT INTO devices (kid, floor, seen, highest, accepted, last_accepted,"
                    " last_window_end, last_window_length, policy, firmware)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (kid) DO UPDATE SET"
                    " floor = excluded.floor, seen = excluded.seen, highest = excluded.highest,"
                    " accepted = devices.accepted + excluded.accepted,"
                    " last_accepted = excluded.last_accepted,"
                    " last_window_length = CASE WHEN excluded.last_window_end IS NOT NULL AND"
                    "  (devices.last_window_end IS NULL OR"
                    "   excluded.last_window_end >= devices.last_window_end)"
                    "  THEN excluded.last_window_length ELSE devices.last_window_length END,"
                    " policy = CASE WHEN excluded.last_window_end IS NOT NULL AND"
                    "  (devices.last_window_end IS NULL OR"
                    "   excluded.last_window_end >= devices.last_window_end)"
                    "  THEN coalesce(excluded.policy, devices.policy) ELSE devices.policy END,"
                    " last_window_end = CASE WHEN devices.last_window_end IS NULL OR"
                    "  excluded.last_window_end > devices.last_window_end"
                    "  THEN excluded.last_window_end ELSE devices.last_window_end END,"
                    " firmware = coalesce(excluded.firmware, devices.firmware)",
                    (
                        kid,
                        w.floor,
                        w.seen_bytes(),
                        w.highest,
                        d.accepted,
                        d.last_accepted,
                        d.last_window_end,
                        d.last_window_length,
                        d.policy,
                        d.firmware,
                    ),
                )
            for (reason, kid), n in sorted(
                rejects.items(), key=lambda kv: (kv[0][0], kv[0][1] or b"")
            ):
                if kid is None:
                    self._x(
                        "INSERT INTO rejections VALUES (?, ?) ON CONFLICT (reason)"
                        " DO UPDATE SET count = rejections.count + excluded.count",
                        (reason, n),
                    )
                else:
                    self._x(
                        "INSERT INTO device_rejections VALUES (?, ?, ?) ON CONFLICT (kid, reason)"
                        " DO UPDATE SET count = device_rejections.count + excluded.count",
                        (kid, reason, n),
                    )
        except self.errors as e:
            raise self._fail(e) from None

    # --- replay state and readings ------------------------------------------------------------

    def window(self, kid: bytes) -> ReplayWindow:
        if self._depth:
            d = self._tx_devs.get(kid)
            if d is None:
                d = self._tx_devs[kid] = _Dev(self._read_window(kid, lock=True))
            w = d.window
            return ReplayWindow(w.floor, w.seen)
        return self._read_window(kid, lock=False)

    def _read_window(self, kid: bytes, *, lock: bool) -> ReplayWindow:
        try:
            if lock:
                row = self._lock_device(kid)
            else:
                row = self._x("SELECT floor, seen FROM devices WHERE kid = ?", (kid,)).fetchone()
        except self.errors as e:
            raise self._fail(e) from None
        return ReplayWindow.stored(row[0], row[1]) if row else ReplayWindow()

    def accept(self, reading: Reading) -> int:
        if self._depth:  # inside a batch: skip the context manager (it shows in profiles)
            return self._accept(reading)
        with self.transaction():
            return self._accept(reading)

    def _accept(self, reading: Reading) -> int:
        r = reading.record
        w = self.window(reading.kid)
        w.accept(reading.piv)  # FrameRejected: nothing written in this frame
        start, length, policy = _col(r.get(_K_START)), _col(r.get(_K_LENGTH)), r.get(_K_POLICY)
        if type(policy) is not bytes:
            policy = None
        try:
            rid = self._insert_reading(
                (
                    reading.kid,
                    reading.device,
                    reading.generation,
                    reading.piv,
                    reading.received,
                    reading.source,
                    _col(r.get(_K_STREAM)),
                    start,
                    length,
                    policy,
                    canonical_record(r),
                )
            )
        except self.errors as e:
            raise self._fail(e) from None
        if rid is None:
            # (kid, piv) already stored although the window allowed it: only possible if
            # the window row was lost or edited. Never store a frame twice.
            raise FrameRejected("replay", reading.kid)
        d = self._tx_devs[reading.kid]
        d.window = w
        d.accepted += 1
        d.last_accepted = reading.received
        if start is not None and length is not None:
            end = start + length
            if d.last_window_end is None or end >= d.last_window_end:
                d.last_window_end, d.last_window_length = end, length
                d.policy = policy or d.policy
        fw = r.get(_K_FIRMWARE)
        if type(fw) is str:
            d.firmware = fw[:64]
        return rid

    def reject(self, reason: str, kid: bytes | None = None) -> None:
        with self.transaction():
            self._tx_rejects[(reason, None)] += 1
            if kid is not None and reason not in NOT_A_DEVICE:
                self._tx_rejects[(reason, bytes(kid))] += 1

    # --- retention ----------------------------------------------------------------------------

    def set_policy(self, policy_hash: bytes, receiver_days: int, name: str) -> None:
        with self.transaction():
            try:
                self._x(
                    "INSERT INTO policies VALUES (?, ?, ?) ON CONFLICT (hash) DO UPDATE SET"
                    " receiver_days = excluded.receiver_days, name = excluded.name",
                    (bytes(policy_hash), int(receiver_days), name),
                )
            except self.errors as e:
                raise self._fail(e) from None

    def prune(self, now: float | None = None) -> PruneResult:
        """Delete readings whose window started more than their policy's receiver_days ago
        (the time received when a reading has no window start). Readings naming a policy the
        store does not know are kept and counted."""
        now = time.time() if now is None else now
        out = PruneResult()
        with self.transaction():
            try:
                pols = self._x("SELECT hash, receiver_days FROM policies ORDER BY hash").fetchall()
                for h, days in pols:
                    cutoff = int(now) - int(days) * 86400
                    cur = self._x(
                        "DELETE FROM readings WHERE policy = ? AND"
                        " coalesce(window_start, CAST(received AS BIGINT)) < ?",
                        (bytes(h), cutoff),
                    )
                    if cur.rowcount:
                        out.deleted[bytes(h).hex()] = cur.rowcount
                row = self._x(
                    "SELECT count(*) FROM readings WHERE policy IS NULL OR policy NOT IN"
                    " (SELECT hash FROM policies)"
                ).fetchone()
                out.kept_unknown_policy = int(row[0])
            except self.errors as e:
                raise self._fail(e) from None
        return out

    # --- duplicates and key bindings (issue 15) ----------------------------------------------

    def has_reading(self, kid: bytes, piv: int) -> bool:
        try:
            row = self._x("SELECT 1 FROM readings WHERE kid = ? AND piv = ?", (kid, piv))
            return row.fetchone() is not None
        except self.errors as e:
            raise self._fail(e) from None

    def key_hash(self, kid: bytes) -> bytes | None:
        try:
            row = self._x("SELECT key_hash FROM kid_keys WHERE kid = ?", (kid,)).fetchone()
        except self.errors as e:
            raise self._fail(e) from None
        return None if row is None else bytes(row[0])

    def bind_key(self, kid: bytes, key_hash: bytes) -> None:
        with self.transaction():
            try:
                self._x(
                    "INSERT INTO kid_keys VALUES (?, ?) ON CONFLICT (kid) DO NOTHING",
                    (kid, key_hash),
                )
            except self.errors as e:
                raise self._fail(e) from None

    def device_numbers(self) -> set[int]:
        """Device numbers with at least one accepted reading (provisioning skips them)."""
        try:
            rows = self._x("SELECT kid FROM devices WHERE accepted > 0").fetchall()
        except self.errors as e:
            raise self._fail(e) from None
        return {int.from_bytes(bytes(r[0])[:4], "big") for r in rows}

    # --- reading back -------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        try:
            rejected = dict(self._x("SELECT reason, count FROM rejections").fetchall())
            bad = dict(
                self._x(
                    "SELECT kid, count FROM device_rejections WHERE reason = 'bad-tag'"
                ).fetchall()
            )
            devices: dict[bytes, dict[str, Any]] = {}
            for kid, acc, hi, la in self._x(
                "SELECT kid, accepted, highest, last_accepted FROM devices ORDER BY kid"
            ):
                devices[bytes(kid)] = {"accepted": acc, "bad_tags": 0, "highest": hi}
                devices[bytes(kid)]["last_accepted"] = la
            for kid, n in bad.items():
                d = devices.setdefault(
                    bytes(kid), {"accepted": 0, "bad_tags": 0, "highest": -1, "last_accepted": None}
                )
                d["bad_tags"] = n
        except self.errors as e:
            raise self._fail(e) from None
        accepted = sum(d["accepted"] for d in devices.values())
        return StoreStats(accepted, rejected, dict(sorted(devices.items())))

    def health(self) -> dict[bytes, DeviceHealth]:
        try:
            out = {
                bytes(r[0]): DeviceHealth(
                    bytes(r[0]), r[1], r[2], r[3], r[4], r[5], bytes(r[6]) if r[6] else None, r[7]
                )
                for r in self._x(
                    "SELECT kid, highest, accepted, last_accepted, last_window_end,"
                    " last_window_length, policy, firmware FROM devices"
                )
            }
            for kid, reason, n in self._x("SELECT kid, reason, count FROM device_rejections"):
                h = out.setdefault(
                    bytes(kid), DeviceHealth(bytes(kid), -1, 0, None, None, None, None, None)
                )
                h.rejected[reason] = int(n)
        except self.errors as e:
            raise self._fail(e) from None
        return out

    def readings(self, after_id: int = 0) -> Iterator[Reading]:
        """Stored readings in id (arrival) order."""
        try:
            cur = self._x(
                "SELECT id, kid, piv, received, source, record FROM readings WHERE id > ?"
                " ORDER BY id",
                (after_id,),
            )
            for rid, kid, piv, received, source, rec in cur:
                yield Reading(bytes(kid), piv, cbor2.loads(rec), received, source, rid)
        except self.errors as e:
            raise self._fail(e) from None

    def count(self) -> int:
        try:
            return int(self._x("SELECT count(*) FROM readings").fetchone()[0])
        except self.errors as e:
            raise self._fail(e) from None

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    kid BLOB PRIMARY KEY,
    floor INTEGER NOT NULL DEFAULT -1,
    seen BLOB NOT NULL DEFAULT x'',
    highest INTEGER NOT NULL DEFAULT -1,
    accepted INTEGER NOT NULL DEFAULT 0,
    last_accepted REAL,
    last_window_end INTEGER,
    last_window_length INTEGER,
    policy BLOB,
    firmware TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_rejections (
    kid BLOB NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (kid, reason)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejections (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS policies (
    hash BLOB PRIMARY KEY,
    receiver_days INTEGER NOT NULL,
    name TEXT NOT NULL
);
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
    policy BLOB,
    record BLOB NOT NULL,
    UNIQUE (kid, piv)
);
CREATE INDEX IF NOT EXISTS readings_retention ON readings (policy, window_start);
CREATE TABLE IF NOT EXISTS kid_keys (kid BLOB PRIMARY KEY, key_hash BLOB NOT NULL) WITHOUT ROWID;
"""


class SQLiteStore(SQLStore):
    """The default store: one SQLite file in WAL mode (``:memory:`` for tests)."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0) -> None:
        super().__init__()
        self.path = self.name = str(path)
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
            # kid_keys came after version 2 without a version of its own (CREATE IF NOT
            # EXISTS): a version 2 store without it gets it here.
            if self._version() != str(SCHEMA_VERSION) or not self._has_table("kid_keys"):
                self._create()
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the store {self.path}: {e}") from None

    def _has_table(self, name: str) -> bool:
        q = "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?"
        return self._db.execute(q, (name,)).fetchone() is not None

    def _version(self) -> str | None:
        if not self._has_table("meta"):
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return row[0] if row else None

    def _create(self) -> None:
        """Create or migrate the schema under the write lock (only when it is not current, so
        opening a store while another writer holds the lock does not wait)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()
            if version == "1":
                _migrate_sqlite_v1(self._db)
            elif version is not None and version != str(SCHEMA_VERSION):
                raise StoreError(
                    f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}"
                )
            for stmt in _SQLITE_SCHEMA.split(";"):
                if stmt.strip():
                    self._db.execute(stmt)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _begin(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._db.execute("COMMIT")

    def _rollback(self) -> None:
        # SQLite may already have rolled back by itself (disk full, I/O error).
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _x(self, q: str, params: tuple[Any, ...] = ()) -> Any:
        return self._db.execute(q, params)

    # BEGIN IMMEDIATE holds the database's write lock: the plain read is already exclusive.

    def _insert_reading(self, params: tuple[Any, ...]) -> int | None:
        # A failed statement does not end a SQLite transaction, and a plain INSERT is cheaper
        # than ON CONFLICT .. RETURNING.
        try:
            cur = self._db.execute(self._INSERT, params)
        except sqlite3.IntegrityError as e:
            if getattr(e, "sqlite_errorname", "") == "SQLITE_CONSTRAINT_UNIQUE":
                return None
            raise
        return cur.lastrowid

    def close(self) -> None:
        self._db.close()


def _migrate_sqlite_v1(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2 inside the open transaction: the 32-bit window becomes floor and seen
    (nothing the old window refused is reopened), bad_tags moves to device_rejections, the
    readings get their policy column from the stored records."""
    db.execute("ALTER TABLE readings ADD COLUMN policy BLOB")
    for rid, rec in db.execute("SELECT id, record FROM readings").fetchall():
        try:
            pol = cbor2.loads(rec).get(_K_POLICY)
        except Exception:
            pol = None
        if type(pol) is bytes:
            db.execute("UPDATE readings SET policy = ? WHERE id = ?", (pol, rid))
    old = db.execute(
        "SELECT kid, highest, bitmap, accepted, bad_tags, last_accepted FROM devices"
    ).fetchall()
    db.execute("ALTER TABLE devices RENAME TO devices_v1")
    for stmt in _SQLITE_SCHEMA.split(";"):
        if stmt.strip():
            db.execute(stmt)  # (executescript would commit the open transaction)
    for kid, highest, bitmap, accepted, bad_tags, last_accepted in old:
        w = ReplayWindow()
        if highest >= 0:
            # Everything 32 or more below highest was refused as too old: fold it into the
            # floor; the 32 bits above it are the old bitmap read from the other end.
            floor = highest - 32
            seen = sum(1 << j for j in range(32) if bitmap >> (31 - j) & 1)
            run = (~seen & (seen + 1)).bit_length() - 1
            w = ReplayWindow(floor + run, seen >> run)
        db.execute(
            "INSERT INTO devices (kid, floor, seen, highest, accepted, last_accepted)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (kid, w.floor, w.seen_bytes(), highest, accepted, last_accepted),
        )
        if bad_tags:
            db.execute("INSERT INTO device_rejections VALUES (?, 'bad-tag', ?)", (kid, bad_tags))
    db.execute("DROP TABLE devices_v1")
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def default_db() -> str:
    """``$ATSOURCE_DB`` (a path or a postgresql:// URL), else the per-user SQLite file."""
    env = os.environ.get(DB_ENV)
    if env:
        return env if is_postgres_url(env) else str(Path(env).expanduser())
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return str(Path(base) / "atsource" / "readings.db")


def is_postgres_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def open_store(spec: str | Path | None = None) -> SQLStore:
    """A store from a --db value: a ``postgresql://`` URL, else a SQLite path (default:
    ``default_db()``)."""
    s = str(spec) if spec is not None else default_db()
    if is_postgres_url(s):
        from .store_pg import PostgresStore

        return PostgresStore(s)
    if "://" in s:
        raise StoreError(f"unsupported store {s.split('://')[0]}://: give a path or postgresql://")
    return SQLiteStore(Path(s).expanduser())
