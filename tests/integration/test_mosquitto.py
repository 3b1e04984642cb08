"""The receiver against a real Mosquitto broker on loopback (no mocks).

Each test module run starts /usr/sbin/mosquitto (or the one on PATH) on a free 127.0.0.1 port
with a temporary configuration, publishes frames with paho-mqtt at QoS 1 and lets the receiver
subscribe, verify and store them in a real SQLite file. Skipped when mosquitto is not installed
(`.ci/run` installs it on Debian-like systems).
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import pytest
from atsource import keys
from atsource.frame import KeyEntry, enc_structure, external_aad, make_nonce
from atsource.receiver import MqttSource, Receiver, RunSummary, open_source
from atsource.store import SQLiteStore, StoreError
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from paho.mqtt.enums import CallbackAPIVersion

# The broker fixture (tests/conftest.py) starts this binary.
MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto not installed (apt-get install mosquitto)"
)

KID = keys.make_kid(0x00000042, 1)
FLEET = [keys.make_kid(0x100 + i, 0) for i in range(20)]
ENTRIES = {k: KeyEntry(*keys.derive(bytes(range(16)), k)) for k in [KID, *FLEET]}
TOPIC = "atsource/up/00000042"


def frame(piv: int, kid: bytes = KID) -> bytes:
    """A sealed frame built from cryptography and cbor2 (the device sealer is tested apart)."""
    e = ENTRIES[kid]
    p = piv.to_bytes(max(1, (piv.bit_length() + 7) // 8), "big")
    rec = cbor2.dumps({0: 1780272000 + 900 * piv, 1: 900, 2: b"\x5a\x3c\x9e\x01", 7: 2, 6: piv})
    aad = enc_structure(external_aad(kid, p))
    ct = AESCCM(e.key, tag_length=8).encrypt(make_nonce(e.context_iv, p), rec, aad)
    return cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x0a", {4: kid, 6: p}, ct]))


class Publisher:
    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, payloads: list[bytes], topic: str = TOPIC) -> None:
        infos = [self.client.publish(topic, p, qos=1) for p in payloads]
        for i in infos:
            i.wait_for_publish(timeout=10)
            assert i.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(broker: int) -> Iterator[Publisher]:
    p = Publisher(broker)
    yield p
    p.close()


class Running:
    """A source running a receiver in a thread, as `atsource receive` does in its main one."""

    def __init__(self, src: MqttSource, rx: Receiver, **kw: Any) -> None:
        self.src = src
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.summary = src.run(rx, **kw)
            except BaseException as e:
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert src.ready.wait(10), "no SUBACK from the broker"

    def join(self, timeout: float = 30) -> RunSummary:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "receiver still running"
        if self.error:
            raise self.error
        assert self.summary is not None
        return self.summary


def test_frames_published_over_mqtt_are_verified_and_stored(
    broker: int, publisher: Publisher, tmp_path: Path
) -> None:
    db = tmp_path / "r.db"
    store = SQLiteStore(db)
    src = open_source(f"mqtt://127.0.0.1:{broker}/atsource/up/#")
    assert isinstance(src, MqttSource)
    run = Running(src, Receiver(store, ENTRIES.get), count=40, timeout=30)
    order = list(range(20)) + [25, 21, 24, 20, 22, 23] + list(range(26, 40))
    junk = [b"", b"\xd0\x83", frame(3), bytes(5000), frame(41)[:-1] + b"\x00"]
    publisher.send([frame(n) for n in order[:10]] + junk + [frame(n) for n in order[10:]])
    summary = run.join()
    assert (summary.accepted, summary.ended) == (40, "count")
    assert dict(summary.rejected) == {"not-cose": 2, "replay": 1, "oversized": 1, "bad-tag": 1}
    assert [r.piv for r in store.readings()] == order  # in arrival order, none missing
    assert {r.source for r in store.readings()} == {f"mqtt:{TOPIC}"}
    store.close()


def test_shared_subscription_splits_one_stream_between_two_receivers(
    broker: int, publisher: Publisher, tmp_path: Path
) -> None:
    """A fleet of 20 devices, 10 frames each, as they interleave on the broker. The two
    receivers share one store (one replay window per device). Mosquitto deals messages round
    robin, so one device's frames may be reordered between receivers; the window takes that
    (a whole backlog: tests/integration/test_receivers_side_by_side.py)."""
    db = tmp_path / "shared.db"
    SQLiteStore(db).close()
    runs = []
    for _ in range(2):
        src = open_source(f"mqtt://127.0.0.1:{broker}/atsource/up/#", share="rx")
        assert isinstance(src, MqttSource)
        runs.append(Running(src, Receiver(SQLiteStore(db), ENTRIES.get), timeout=60))
    n = 200
    publisher.send([frame(i, kid) for i in range(10) for kid in FLEET])
    watcher = sqlite3.connect(db)
    deadline = time.monotonic() + 30
    while watcher.execute("SELECT count(*) FROM readings").fetchone()[0] < n:
        if time.monotonic() > deadline:
            for r in runs:
                r.src.stop()
            pytest.fail(f"frames missing: {[r.join().as_dict() for r in runs]}")
        time.sleep(0.05)
    for r in runs:
        r.src.stop()
    summaries = [r.join() for r in runs]
    assert all(s.accepted > 0 for s in summaries), [s.accepted for s in summaries]
    assert sum(s.accepted for s in summaries) == n
    assert all(not s.rejected for s in summaries)
    got = sorted(watcher.execute("SELECT kid, piv FROM readings"))
    assert got == sorted((kid, i) for i in range(10) for kid in FLEET)
    watcher.close()


def test_a_frame_not_stored_is_not_acknowledged_and_comes_again(
    broker: int, publisher: Publisher, tmp_path: Path
) -> None:
    """The store fails on the first frame: the receiver stops without a PUBACK, and a receiver
    resuming the same (persistent) session gets that frame again from the broker."""
    db = tmp_path / "r.db"
    store = SQLiteStore(db)
    con = sqlite3.connect(db)
    con.execute("CREATE TRIGGER full BEFORE INSERT ON readings BEGIN SELECT RAISE(FAIL, 'x'); END")
    con.commit()
    url = f"mqtt://127.0.0.1:{broker}/atsource/up/#"
    src = open_source(url, client_id="rx-persistent")
    assert isinstance(src, MqttSource)
    run = Running(src, Receiver(store, ENTRIES.get), timeout=30)
    publisher.send([frame(7)])
    with pytest.raises(StoreError):
        run.join()
    assert store.count() == 0
    con.execute("DROP TRIGGER full")
    con.commit()
    con.close()
    src = open_source(url, client_id="rx-persistent")
    assert isinstance(src, MqttSource)
    summary = src.run(Receiver(store, ENTRIES.get), count=1, timeout=20)
    assert (summary.accepted, summary.ended) == (1, "count")
    assert [r.piv for r in store.readings()] == [7]
    store.close()


def test_timeout_without_frames(broker: int, tmp_path: Path) -> None:
    src = open_source(f"mqtt://127.0.0.1:{broker}/nobody/#")
    with SQLiteStore(tmp_path / "r.db") as store:
        summary = src.run(Receiver(store, ENTRIES.get), count=1, timeout=0.5)
    assert (summary.frames, summary.ended) == (0, "timeout")
