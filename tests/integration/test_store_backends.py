"""Both stores, one meaning: SQLite and a real PostgreSQL server (started by the `postgres`
fixture on a free loopback port) run the same checks: accept and replay state in one
transaction, batches, rejections per device, retention, fleet health, and writers side by
side never accepting one counter twice, even with a device's backlog arriving out of order."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from atsource.frame import FrameRejected, ReplayWindow
from atsource.store import Reading, SQLStore, StoreError, open_store

KID = bytes.fromhex("0001234501")
KID2 = bytes.fromhex("0000000700")
POLICY = bytes.fromhex("5a3c9e01")
DAY = 86400
T0 = 1_780_272_000


def rec(start: int = T0, policy: bytes = POLICY, extra: dict[int, Any] | None = None) -> dict:
    return {0: start, 1: 900, 2: policy, 7: 1, 3: 2153, **(extra or {})}


def reading(piv: int, kid: bytes = KID, r: dict[int, Any] | None = None) -> Reading:
    return Reading(kid, piv, rec() if r is None else r, T0 + 1000.5, "test")


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "r.db")
    return request.getfixturevalue("pg_url")


def test_accept_replay_and_window_persist(spec: str) -> None:
    with open_store(spec) as s:
        assert s.accept(reading(10)) >= 1
        s.accept(reading(8))
        with pytest.raises(FrameRejected, match="^replay$"):
            s.accept(reading(8))
        s.accept(reading(10 + ReplayWindow.SIZE))
        with pytest.raises(FrameRejected, match="^too-old$"):
            s.accept(reading(9))
    with open_store(spec) as s:  # reopened: the same window
        w = s.window(KID)
        assert w.highest == 10 + ReplayWindow.SIZE
        with pytest.raises(FrameRejected, match="^replay$"):
            s.accept(reading(10 + ReplayWindow.SIZE))
        s.accept(reading(11 + ReplayWindow.SIZE))
        assert [r.piv for r in s.readings()] == [
            10,
            8,
            10 + ReplayWindow.SIZE,
            11 + ReplayWindow.SIZE,
        ]
        assert s.stats().devices[KID]["accepted"] == 4


def test_batch_rolls_back_as_a_whole(spec: str) -> None:
    with open_store(spec) as s:
        with s.transaction():
            for p in range(5):
                s.accept(reading(p))
        with pytest.raises(KeyboardInterrupt), s.transaction():
            s.accept(reading(9))
            s.reject("bad-tag", KID)
            raise KeyboardInterrupt
        assert s.count() == 5 and s.window(KID).highest == 4
        assert s.stats().rejected == {}
        s.accept(reading(9))  # the window did not keep 9 from the rolled-back batch


def test_rejections_per_reason_and_per_device(spec: str) -> None:
    with open_store(spec) as s:
        with s.transaction():
            s.reject("not-cose")
            s.reject("bad-tag", KID)
            s.reject("bad-tag", KID)
            s.reject("too-old", KID2)
            s.reject("unknown-kid", bytes(5))  # never a device row
        st = s.stats()
        h = s.health()
    assert st.rejected == {"not-cose": 1, "bad-tag": 2, "too-old": 1, "unknown-kid": 1}
    assert st.devices[KID]["bad_tags"] == 2
    assert h[KID].rejected == {"bad-tag": 2} and h[KID2].rejected == {"too-old": 1}
    assert bytes(5) not in h


def test_health_follows_the_newest_window(spec: str) -> None:
    with open_store(spec) as s:
        s.accept(reading(1, r=rec(T0 + 900, policy=b"\x01\x02\x03\x04")))
        s.accept(reading(0, r=rec(T0, policy=b"\x09\x09\x09\x09")))  # late, older window
        s.accept(reading(2, r=rec(T0 + 1800, extra={28: "1.4.2"})))
        h = s.health()[KID]
    assert (h.highest, h.accepted) == (2, 3)
    assert (h.last_window_end, h.last_window_length) == (T0 + 2700, 900)
    assert h.policy == POLICY and h.firmware == "1.4.2"
    assert h.last_accepted == T0 + 1000.5


def test_retention_deletes_by_each_readings_policy(spec: str) -> None:
    short, long_, unknown = b"\x00\x00\x00\x01", b"\x00\x00\x00\x02", b"\x00\x00\x00\x03"
    now = T0 + 40 * DAY
    with open_store(spec) as s:
        s.set_policy(short, 30, "short")
        s.set_policy(long_, 365, "long")
        for piv, (start, pol) in enumerate(
            [
                (T0, short),  # 40 days old, kept 30: deleted
                (T0 + 20 * DAY, short),  # 20 days: kept
                (T0, long_),  # 40 days, kept 365: kept
                (T0, unknown),  # unknown policy: kept and counted
            ]
        ):
            s.accept(reading(piv, r=rec(start, pol)))
        res = s.prune(now=now)
        assert res.as_dict() == {
            "deleted": {short.hex(): 1},
            "deleted_total": 1,
            "kept_unknown_policy": 1,
        }
        assert sorted(r.piv for r in s.readings()) == [1, 2, 3]
        with pytest.raises(FrameRejected, match="^replay$"):
            s.accept(reading(0, r=rec(T0, short)))  # deleted, but never accepted again
        assert s.prune(now=now).deleted == {}


def _hammer(spec: str, pivs: list[int], out: list[int], lock: threading.Lock, batch: int) -> None:
    with open_store(spec) as s:
        for i in range(0, len(pivs), batch):
            with s.transaction():
                for p in pivs[i : i + batch]:
                    try:
                        s.accept(reading(p))
                    except FrameRejected:
                        continue
                    with lock:
                        out.append(p)


@pytest.mark.parametrize("batch", [1, 25])
def test_writers_side_by_side_accept_each_counter_once(spec: str, batch: int) -> None:
    """Three writers (own connections) get one device's 600-frame backlog, each in its own
    shuffled order and each frame twice: every counter is stored exactly once and the window
    ends whole, with nothing refused as too old."""
    open_store(spec).close()
    pivs = list(range(1000, 1600))
    accepted: list[int] = []
    lock = threading.Lock()
    threads = []
    for seed in range(3):
        order = pivs * 2
        random.Random(seed).shuffle(order)
        threads.append(threading.Thread(target=_hammer, args=(spec, order, accepted, lock, batch)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(accepted) == pivs
    with open_store(spec) as s:
        assert sorted(r.piv for r in s.readings()) == pivs
        w = s.window(KID)
        assert (w.highest, w.seen) == (1599, w.seen) and s.count() == 600
        assert s.stats().devices[KID]["accepted"] == 600


def test_duplicates_key_bindings_and_device_numbers(spec: str) -> None:
    """What the receiver's `duplicate` and `kid-reused` checks and provisioning's numbering
    ask the store, the same on both stores: a stored (kid, piv), the first key fingerprint
    bound to a kid (kept, and rolled back with its transaction), and the device numbers with
    accepted readings (a kid only checked or rejected does not count)."""
    with open_store(spec) as s:
        s.accept(reading(3))
        assert s.has_reading(KID, 3) and not s.has_reading(KID, 4)
        assert not s.has_reading(KID2, 3)
        assert s.key_hash(KID) is None
        with pytest.raises(KeyboardInterrupt), s.transaction():
            s.bind_key(KID, b"a" * 16)
            raise KeyboardInterrupt
        assert s.key_hash(KID) is None
        s.bind_key(KID, b"a" * 16)
        s.bind_key(KID, b"b" * 16)  # a second binding never replaces the first
        assert s.key_hash(KID) == b"a" * 16
        with s.transaction():
            s.window(KID2)  # PostgreSQL makes a row to lock; still no device number
            s.reject("bad-tag", KID2)
        assert s.device_numbers() == {int.from_bytes(KID[:4], "big")}
    with open_store(spec) as s:  # reopened: the binding is kept
        assert s.key_hash(KID) == b"a" * 16
    from atsource.provision import seen_numbers

    assert seen_numbers(spec) == {int.from_bytes(KID[:4], "big")}  # what `provision --db` asks


def test_open_errors_are_one_line(tmp_path: Path) -> None:
    from atsource.provision import seen_numbers

    assert seen_numbers(tmp_path / "absent.db") == frozenset()  # a SQLite store not here
    assert not (tmp_path / "absent.db").exists()
    with pytest.raises(StoreError, match="cannot open the store postgresql://rx@127.0.0.1:1/x"):
        open_store("postgresql://rx:secret@127.0.0.1:1/x")
    with pytest.raises(StoreError, match="unsupported store mysql://"):
        open_store("mysql://x/y")


def test_postgres_store_is_chosen_by_url(pg_url: str) -> None:
    s = open_store(pg_url)
    assert isinstance(s, SQLStore) and type(s).__name__ == "PostgresStore"
    s.close()


def test_export_and_stats_through_the_cli(spec: str) -> None:
    """`receive --stats` and `--export` work the same on both stores (PostgreSQL streams the
    export through a server-side cursor)."""
    import json

    from atsource.cli import main as cli_main
    from click.testing import CliRunner

    with open_store(spec) as s, s.transaction():
        for p in range(2500):
            s.accept(reading(p))
    r = CliRunner().invoke(cli_main, ["receive", "--db", spec, "--export", "json", "--out", "-"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["piv"] for x in rows] == list(range(2500)) and rows[0]["kid"] == KID.hex()
    r = CliRunner().invoke(cli_main, ["receive", "--db", spec, "--stats", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stats"]["devices"][KID.hex()]["highest_piv"] == 2499
