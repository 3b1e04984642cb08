"""The field's uplink, end to end on an emulated board: provisioned with an mqtts:// uplink, the
firmware's own MQTT client (through the bridged sockets and TLS) publishes its sealed frames to
a real Mosquitto; the real receiver (MqttSource, Receiver, SQLite) stores them. The broker is
restarted and the network goes down while the board runs: nothing is lost (the outbox keeps
what was not acknowledged) and nothing is stored twice."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from atsource.boards import load_board
from atsource.emulator.api import make_world
from atsource.emulator.engine import EmulatedBoard
from atsource.frame import KeyEntry
from atsource.keys import derive, make_kid
from atsource.pytest_plugin import parse_outbox
from atsource.receiver import MqttSource, Receiver, Result
from atsource.store import SQLiteStore
from provisioned import provision_flash
from servers import free_port, make_ca, start_mosquitto, stop, tls_listener

MIN = 60 * 1_000_000
KID = make_kid(77, 1)
KEY, IV = derive(bytes(range(32, 48)), KID)
TOPIC = "atsource/up/dev-77"
END = "atsource/up/zz-end"


class Hooked:
    """A scenario world with actions at simulated times (the broker stops and starts) and a
    network outage, all on the board's virtual clock: the same run every time."""

    def __init__(self, base: Any, hooks: list[tuple[int, Any]], net: list[tuple[int, bool]]):
        self.base = base
        self.start_us, self.end_us = base.start_us, base.end_us
        self.hooks = sorted(hooks, key=lambda h: h[0])
        self.net = sorted(net)

    def events_until(self, t_us: int) -> list[tuple[Any, ...]]:
        while self.hooks and self.hooks[0][0] <= t_us:
            self.hooks.pop(0)[1]()
        out = list(self.base.events_until(t_us))
        while self.net and self.net[0][0] <= t_us:
            t, up = self.net.pop(0)
            out.append(("net", t, up))
        return sorted(out, key=lambda e: e[1])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


class Tap(Receiver):
    """The real receiver, noticing the end marker the test publishes after the run."""

    done = threading.Event()
    starts: list[int] = []

    def submit(self, frame: Any, source: str = "") -> Result:
        if source == f"mqtt:{END}":
            self.done.set()
        res = super().submit(frame, source)
        if res.accepted and res.reading is not None:
            self.starts.append(res.reading.record[0])
        return res


def test_mqtts_uplink_survives_broker_restart_and_outage(tmp_path: Path) -> None:
    d = tmp_path / "broker"
    d.mkdir()
    ca, cert, key = make_ca(d)
    port = free_port()
    listener = tls_listener(port, ca, cert, key)
    broker = [start_mosquitto(d, *listener, persist=True)]

    store = SQLiteStore(tmp_path / "readings.db")
    rx = Tap(store, lambda kid: KeyEntry(KEY, IV) if kid == KID else None)
    src = MqttSource("127.0.0.1", port, "atsource/up/#", tls=True, client_id="rx-1", ca=str(ca))
    t = threading.Thread(target=lambda: src.run(rx), daemon=True)
    t.start()
    assert src.ready.wait(60), "the receiver did not subscribe"

    b = load_board("pico-w")
    flash = tmp_path / "flash"
    uplink = {"transport": "mqtt", "url": f"mqtts://localhost:{port}", "topic": TOPIC}
    provision_flash(b, flash, KID, KEY, IV, uplink={**uplink, "ca": ca.read_text()})

    base = make_world(b, "smoke", 1, None)
    s0 = base.start_us

    def broker_down() -> None:
        stop(broker[0])

    def broker_up() -> None:
        broker[0] = start_mosquitto(d, *listener, persist=True)

    world = Hooked(
        base,
        hooks=[(s0 + 50 * MIN, broker_down), (s0 + 95 * MIN, broker_up)],
        net=[(s0 + 130 * MIN, False), (s0 + 170 * MIN, True)],
    )
    emu = EmulatedBoard(b, flash, world=world, start_us=s0, seed=1)
    try:
        emu.run(duration_us=240 * MIN)
        # Everything the broker acknowledged reaches the receiver before this marker.
        pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        pub.tls_set(ca_certs=str(ca))
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish(END, b"end", qos=1).wait_for_publish()
        pub.loop_stop()
        pub.disconnect()
        assert Tap.done.wait(120), "the end marker never reached the receiver"
    finally:
        src.stop()
        t.join(timeout=60)
        stop(broker[0])

    lines = [line for _, line in emu.lines]
    pending = (
        parse_outbox((flash / "outbox.log").read_bytes()) if (flash / "outbox.log").exists() else []
    )
    db = sqlite3.connect(tmp_path / "readings.db")
    stored = [r[0] for r in db.execute("SELECT piv FROM readings ORDER BY piv")]
    assert len(stored) >= 12, lines[-20:]
    assert len(stored) == len(set(stored)), "a frame was stored twice"
    # Nothing lost: every counter value from the first stored on is stored or still pending.
    from atsource.frame import decode_envelope

    waiting = {int.from_bytes(decode_envelope(f).piv, "big") for f in pending}
    assert set(range(stored[0], max(stored + list(waiting)) + 1)) <= set(stored) | waiting
    # Windows that closed while the broker was down, and during the outage, were sealed then,
    # kept in the outbox and delivered later: they are in the store.
    t0 = s0 // 1_000_000
    assert any(t0 + 55 * 60 <= w < t0 + 90 * 60 for w in Tap.starts), Tap.starts
    assert any(t0 + 135 * 60 <= w < t0 + 165 * 60 for w in Tap.starts), Tap.starts


def test_http_uplink_into_the_receivers_http_ingest(tmp_path: Path) -> None:
    # The firmware's HTTP transport POSTs each sealed frame; `atsource receive --from
    # http://HOST:PORT/PATH` (HttpSource) verifies and stores it before answering.
    from atsource.receiver import open_source

    store = SQLiteStore(tmp_path / "readings.db")
    rx = Receiver(store, lambda kid: KeyEntry(KEY, IV) if kid == KID else None)
    port = free_port()
    src = open_source(f"http://127.0.0.1:{port}/uplink")
    t = threading.Thread(target=lambda: src.run(rx), daemon=True)
    t.start()
    assert src.ready.wait(60)

    b = load_board("esp32-devkitc")
    flash = tmp_path / "flash"
    url = f"http://127.0.0.1:{port}/uplink"
    provision_flash(b, flash, KID, KEY, IV, uplink={"transport": "http", "url": url})
    world = make_world(b, "smoke", 1, None)
    emu = EmulatedBoard(b, flash, world=world, start_us=world.start_us, seed=1)
    try:
        emu.run(duration_us=65 * MIN)
    finally:
        src.stop()
        t.join(timeout=60)
    db = sqlite3.connect(tmp_path / "readings.db")
    stored = [r[0] for r in db.execute("SELECT piv FROM readings ORDER BY piv")]
    assert len(stored) >= 8 and len(stored) == len(set(stored))
    log = flash / "outbox.log"
    assert not (log.exists() and parse_outbox(log.read_bytes())), "frames left undelivered"
