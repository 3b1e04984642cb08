"""SQLiteStore: schema, one-transaction accept, replay state across reopen, counters, batches."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from atsource.frame import FrameRejected, ReplayWindow
from atsource.store import SCHEMA_VERSION, Reading, SQLiteStore, StoreError

KID = bytes.fromhex("0001234501")
KID2 = bytes.fromhex("0000000700")
REC = {0: 1767225600, 1: 900, 2: b"\x5a\x3c\x9e\x01", 7: 1, 3: -512}


def win(*pivs: int) -> ReplayWindow:
    """The window after accepting pivs (in that order)."""
    w = ReplayWindow()
    for p in pivs:
        w.accept(p)
    return w


def reading(piv: int, kid: bytes = KID, rec: dict | None = None) -> Reading:
    return Reading(kid, piv, REC if rec is None else rec, 1767226500.25, "test")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "readings.db"


def test_schema_and_wal(db: Path) -> None:
    with SQLiteStore(db):
        pass
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {
        "meta",
        "devices",
        "device_rejections",
        "rejections",
        "policies",
        "readings",
        "kid_keys",
    }
    assert con.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    cols = [r[1] for r in con.execute("PRAGMA table_info(readings)")]
    assert cols == [
        "id", "kid", "device", "generation", "piv", "received", "source",
        "stream", "window_start", "window_length", "policy", "record",
    ]  # fmt: skip
    con.close()


def test_accept_stores_reading_and_window_together(db: Path) -> None:
    with SQLiteStore(db) as s:
        assert s.window(KID) == ReplayWindow()
        rid = s.accept(reading(10))
        assert rid == 1
        assert s.window(KID) == win(10)
        s.accept(reading(8))
        assert s.window(KID) == win(10, 8)
        with pytest.raises(FrameRejected, match="^replay$"):
            s.accept(reading(8))
        s.accept(reading(100))
        with pytest.raises(FrameRejected, match="^replay$"):
            s.accept(reading(10))
        with pytest.raises(FrameRejected, match="^too-old$"):
            s.accept(reading(100 - ReplayWindow.SIZE))
        got = list(s.readings())
        assert [(r.id, r.piv, r.record, r.source) for r in got] == [
            (1, 10, REC, "test"),
            (2, 8, REC, "test"),
            (3, 100, REC, "test"),
        ]
        assert (got[0].device, got[0].generation) == (0x12345, 1)
        assert [r.piv for r in s.readings(after_id=2)] == [100]
        st = s.stats()
        assert st.accepted == 3 and st.devices[KID]["highest"] == 100
    con = sqlite3.connect(db)
    row = con.execute(
        "SELECT device, generation, stream, window_start, window_length FROM readings"
    )
    assert row.fetchone() == (0x12345, 1, 1, 1767225600, 900)


def test_replay_state_survives_reopening(db: Path) -> None:
    with SQLiteStore(db) as s:
        for p in (5, 7, 6):
            s.accept(reading(p))
        s.accept(reading(1, KID2))
    with SQLiteStore(db) as s:
        assert s.window(KID) == win(5, 6, 7)
        assert s.window(KID2) == win(1)
        for p in (5, 6, 7):
            with pytest.raises(FrameRejected, match="^replay$"):
                s.accept(reading(p))
        s.accept(reading(4))
        assert s.stats().accepted == 5


def test_rejected_accept_writes_nothing(db: Path) -> None:
    with SQLiteStore(db) as s:
        s.accept(reading(3))
        before = (s.count(), s.window(KID))
        with pytest.raises(FrameRejected):
            s.accept(reading(3))
        assert (s.count(), s.window(KID)) == before


def test_duplicate_row_is_a_replay_even_if_the_window_was_lost(db: Path) -> None:
    with SQLiteStore(db) as s:
        s.accept(reading(3))
    con = sqlite3.connect(db)
    con.execute("DELETE FROM devices")  # the window row lost or edited by hand
    con.commit()
    con.close()
    with SQLiteStore(db) as s:
        with pytest.raises(FrameRejected, match="^replay$"):
            s.accept(reading(3))
        assert s.count() == 1 and s.window(KID) == ReplayWindow()


def test_failed_insert_does_not_advance_the_window(db: Path) -> None:
    """Per-frame atomicity: the reading is written before the window, so a failing write
    leaves the window where it was (here a trigger makes the insert fail)."""
    with SQLiteStore(db) as s:
        s.accept(reading(1))
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON readings WHEN NEW.piv = 2"
        " BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
    )
    con.commit()
    con.close()
    with SQLiteStore(db) as s:
        with pytest.raises(StoreError, match="disk says no"):
            s.accept(reading(2))
        assert s.window(KID) == win(1) and s.count() == 1
        with pytest.raises(StoreError), s.transaction():  # a batch rolls back as a whole
            s.accept(reading(3))
            s.accept(reading(2))
        assert s.window(KID) == win(1) and s.count() == 1


def test_rejection_counters_and_bad_tags_per_kid(db: Path) -> None:
    with SQLiteStore(db) as s:
        s.reject("not-cose")
        s.reject("not-cose")
        s.reject("bad-tag", KID)
        s.reject("bad-tag", KID)
        s.reject("bad-tag", KID2)
        s.reject("unknown-kid", bytes(5))  # unknown kids never get a device row
        s.accept(reading(1))
    with SQLiteStore(db) as s:
        st = s.stats()
    assert st.rejected == {"not-cose": 2, "bad-tag": 3, "unknown-kid": 1}
    assert st.devices[KID]["bad_tags"] == 2 and st.devices[KID]["accepted"] == 1
    assert st.devices[KID2] == {"accepted": 0, "bad_tags": 1, "highest": -1, "last_accepted": None}
    assert bytes(5) not in st.devices and st.accepted == 1


def test_batch_commits_once_and_rolls_back_on_error(db: Path) -> None:
    with SQLiteStore(db) as s:
        with s.transaction():
            for p in range(5):
                s.accept(reading(p))
            s.reject("replay")
            with pytest.raises(FrameRejected):
                s.accept(reading(2))  # a rejected frame inside a batch leaves the batch intact
            other = SQLiteStore(db, busy_timeout_s=0.05)
            assert other.count() == 0  # nothing visible before the commit
        assert other.count() == 5 and other.window(KID) == win(0, 1, 2, 3, 4)
        other.close()
        with pytest.raises(KeyboardInterrupt), s.transaction():
            s.accept(reading(9))
            raise KeyboardInterrupt
        assert s.count() == 5 and s.window(KID) == win(0, 1, 2, 3, 4)


def test_writer_lock_held_elsewhere_is_a_store_error(db: Path) -> None:
    with SQLiteStore(db) as a, SQLiteStore(db, busy_timeout_s=0.05) as b:
        with a.transaction():
            a.accept(reading(1))
            with pytest.raises(StoreError, match="locked"):
                b.accept(reading(2))
        b.accept(reading(2))
        assert b.window(KID) == win(1, 2)


def test_two_writers_never_accept_the_same_piv(db: Path) -> None:
    """Two stores on one file (two receivers): the window is read inside the write
    transaction, so each piv is accepted exactly once whatever the interleaving."""
    SQLiteStore(db).close()
    accepted: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        with SQLiteStore(db) as s:
            for p in range(200):
                try:
                    s.accept(reading(p))
                except FrameRejected:
                    continue
                with lock:
                    accepted.append(p)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == sorted(set(accepted))
    with SQLiteStore(db) as s:
        assert s.count() == len(accepted) and s.window(KID).highest == 199


def test_big_and_odd_record_values_are_stored(db: Path) -> None:
    rec = {0: 2**64 - 1, 1: -(2**64), 7: b"x", 9: [1, {2: None}], 10: "t", 11: True}
    with SQLiteStore(db) as s:
        s.accept(reading(1, rec=rec))
        (r,) = s.readings()
    assert r.record == rec
    con = sqlite3.connect(db)
    assert con.execute("SELECT stream, window_start, window_length FROM readings").fetchone() == (
        None,
        None,
        None,
    )


def test_unopenable_store_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "junk.db"
    bad.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        SQLiteStore(bad)
    con = sqlite3.connect(tmp_path / "v9.db")
    con.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);")
    con.execute("INSERT INTO meta VALUES ('schema_version', '9')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 9"):
        SQLiteStore(tmp_path / "v9.db")


def test_a_schema_1_store_is_migrated_without_reopening_a_counter(tmp_path: Path) -> None:
    import cbor2

    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE devices (kid BLOB PRIMARY KEY, highest INTEGER NOT NULL DEFAULT -1,
            bitmap INTEGER NOT NULL DEFAULT 0, accepted INTEGER NOT NULL DEFAULT 0,
            bad_tags INTEGER NOT NULL DEFAULT 0, last_accepted REAL) WITHOUT ROWID;
        CREATE TABLE rejections (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
        CREATE TABLE readings (id INTEGER PRIMARY KEY, kid BLOB NOT NULL,
            device INTEGER NOT NULL, generation INTEGER NOT NULL, piv INTEGER NOT NULL,
            received REAL NOT NULL, source TEXT NOT NULL, stream INTEGER,
            window_start INTEGER, window_length INTEGER, record BLOB NOT NULL,
            UNIQUE (kid, piv));
        """
    )
    # highest 100; 100 and 98 accepted (bits 0 and 2); 99 and 69 still open; 68 and below
    # too old (32 or more below)
    con.execute("INSERT INTO devices VALUES (?, 100, 5, 2, 3, 1.5)", (KID,))
    con.execute(
        "INSERT INTO readings VALUES (1, ?, 74565, 1, 100, 1.5, 'x', 1, 0, 900, ?)",
        (KID, cbor2.dumps(REC)),
    )
    con.commit()
    con.close()
    with SQLiteStore(db) as s:
        for p in (100, 98, 68, 3):
            with pytest.raises(FrameRejected):
                s.accept(reading(p))
        for p in (99, 69, 101):
            s.accept(reading(p))
        st = s.stats()
        assert st.devices[KID]["bad_tags"] == 3 and st.devices[KID]["accepted"] == 5
    con = sqlite3.connect(db)
    assert con.execute("SELECT policy FROM readings WHERE id = 1").fetchone() == (REC[2],)
    assert con.execute("SELECT value FROM meta").fetchone() == (str(SCHEMA_VERSION),)


def test_a_version_2_store_without_kid_keys_gets_the_table(db: Path) -> None:
    """kid_keys came after schema 2 without a version of its own: a store made before it is
    given the table when opened, and keeps its readings and windows."""
    with SQLiteStore(db) as s:
        s.accept(reading(7))
    con = sqlite3.connect(db)
    con.execute("DROP TABLE kid_keys")
    con.commit()
    con.close()
    with SQLiteStore(db) as s:
        assert s.key_hash(KID) is None
        s.bind_key(KID, b"h" * 16)
        assert s.key_hash(KID) == b"h" * 16
        assert s.has_reading(KID, 7) and s.window(KID) == win(7)
