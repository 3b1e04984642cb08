"""Receivers side by side: two `atsource receive` processes on one MQTT shared subscription
(a real Mosquitto on loopback) into one store: a real PostgreSQL server, and one SQLite
file. One receiver is killed with SIGKILL mid-stream and restarted
with its persistent session; one device flushes a 2,000-frame backlog among the fleet's
frames. Every frame published is stored exactly once, replays are refused, nothing is lost
or refused as too old: counted at the end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as mqtt
import pytest
from atsource import keys
from atsource.frame import enc_structure, external_aad, make_nonce
from atsource.registry import Registry
from atsource.store import open_store
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from paho.mqtt.enums import CallbackAPIVersion

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
pytestmark = pytest.mark.skipif(
    MOSQUITTO is None, reason="mosquitto not installed (apt-get install mosquitto)"
)
ATSOURCE = str(Path(sys.executable).with_name("atsource"))
BACKLOG = 2000
FLEET_FRAMES = 100
POLICY = bytes.fromhex("5a3c9e01")
T0 = 1_780_272_000


@pytest.fixture(autouse=True)
def _registry_key_beside_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry made here and the receivers started here find its key the same way (the
    file beside it), whatever the environment of the test run names."""
    for name in ("ATSOURCE_REGISTRY_KEY", "ATSOURCE_REGISTRY_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def queueing_broker(tmp_path: Path) -> Iterator[int]:
    """Mosquitto with no cap on the messages queued for an offline persistent session (the
    default, 1000, would drop part of a backlog dealt to a receiver while it is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nlog_dest stderr\nlog_type error\n"
    )
    assert MOSQUITTO is not None
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(params=["postgresql", "sqlite"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PostgreSQL (skipped, with the reason, only where it cannot be run), and one SQLite file
    shared by the receivers of one host."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "readings.db")


def seal(kid: bytes, key: bytes, iv: bytes, piv: int) -> bytes:
    p = piv.to_bytes(max(1, (piv.bit_length() + 7) // 8), "big")
    rec = {0: T0 + 900 * piv, 1: 900, 2: POLICY, 7: 2, 6: piv % 50}
    aad = enc_structure(external_aad(kid, p))
    ct = AESCCM(key, tag_length=8).encrypt(make_nonce(iv, p), cbor2.dumps(rec), aad)
    return cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x0a", {4: kid, 6: p}, ct]))


# Ctrl-C (SIGINT) is how these tests stop a receiver, as a user does. A suite started as a
# shell's background job (`make test &`, nohup) passes SIGINT down ignored, and a Python
# started so installs no KeyboardInterrupt handler: the receivers never stopped and the tests
# failed after 30 s. So each receiver starts with SIGINT at its default, whoever started us.
_SIGINT_DEFAULT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


class Rx:
    """One `atsource receive` process; its stderr collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SIGINT_DEFAULT, ATSOURCE, "receive", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.subscribed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.subscribed.wait(30), f"receiver did not subscribe: {self.lines}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            if line.startswith("receive: subscribed to"):
                self.subscribed.set()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=30)


def _wait(cond: Any, what: str, rxs: list[Rx], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; receivers said: {[r.lines[-5:] for r in rxs]}")
        time.sleep(0.1)


def test_two_receivers_one_killed_store_a_backlog_whole(
    queueing_broker: int, store_spec: str, tmp_path: Path
) -> None:
    reg_path = tmp_path / "registry.db"
    devices: list[tuple[bytes, bytes, bytes]] = []
    with Registry.open(reg_path) as reg:
        for i in range(5):
            _, kid = reg.begin_device(f"{i:02x}" * 32, "pico-w", f"site-{i}", None)
            reg.activate(kid)
            devices.append((kid, *keys.derive(reg.master(kid), kid)))
    backlog_dev, fleet = devices[0], devices[1:]

    # Fleet frames interleaved, the backlog device's 2,000 frames in one burst in the middle.
    published: list[tuple[bytes, int, bytes]] = []
    for n in range(FLEET_FRAMES):
        for kid, key, iv in fleet:
            published.append((kid, n, seal(kid, key, iv, n)))
        if n == FLEET_FRAMES // 4:
            kid, key, iv = backlog_dev
            published += [(kid, p, seal(kid, key, iv, p)) for p in range(BACKLOG)]
    total = len(published)
    assert total == BACKLOG + 4 * FLEET_FRAMES

    env = {k: v for k, v in os.environ.items() if not k.startswith("ATSOURCE_")}
    url = f"mqtt://127.0.0.1:{queueing_broker}/atsource/up/#"
    common = ["--from", url, "--share", "rx", "--db", store_spec, "--registry", str(reg_path)]

    def start(name: str) -> Rx:
        return Rx([*common, "--client-id", name, "--quiet"], env)

    open_store(store_spec).close()
    rx_a, rx_b = start("rx-a"), start("rx-b")
    everyone = [rx_a, rx_b]

    def stored() -> int:
        with open_store(store_spec) as s:
            return s.count()

    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", queueing_broker)
    pub.loop_start()
    try:

        def send(items: list[tuple[bytes, int, bytes]]) -> None:
            infos = [pub.publish(f"atsource/up/{k.hex()}", f, qos=1) for k, _, f in items]
            for i in infos:
                i.wait_for_publish(timeout=30)
                assert i.is_published()

        half = total // 2
        send(published[:half])
        _wait(lambda: stored() >= half // 3, "no progress before the kill", everyone)
        rx_a.proc.send_signal(signal.SIGKILL)  # mid-stream: frames in flight, unacknowledged
        rx_a.proc.wait(timeout=10)
        send(published[half:])
        _wait(lambda: stored() >= half, "no progress with one receiver", everyone)
        rx_a = start("rx-a")  # the same session: the broker kept what was dealt to it
        everyone.append(rx_a)
        _wait(lambda: stored() >= total, f"not all {total} frames stored", everyone)

        replays = [published[i] for i in range(0, total, total // 40)]
        send(replays)  # captured frames sent again by an attacker (or a broker)

        def refused() -> int:
            with open_store(store_spec) as s:
                r = s.stats().rejected
            return r.get("replay", 0) + r.get("duplicate", 0)

        _wait(lambda: refused() >= len(replays), "replays not all refused", everyone)
    finally:
        pub.disconnect()
        pub.loop_stop()
        codes = [r.stop() for r in everyone]

    assert codes[0] == -signal.SIGKILL and codes[1:] == [130, 130], codes
    with open_store(store_spec) as s:
        rows = [(r.kid, r.piv) for r in s.readings()]
        st = s.stats()
    assert len(rows) == total  # published = stored
    assert len(set(rows)) == total  # no duplicates
    assert set(rows) == {(k, p) for k, p, _ in published}
    assert st.rejected.get("too-old", 0) == 0  # honest reordering is not refused
    refused_n = st.rejected.get("replay", 0) + st.rejected.get("duplicate", 0)
    assert refused_n >= len(replays)  # every replay refused (redeliveries after the kill too)
    assert set(st.rejected) <= {"replay", "duplicate"}, st.rejected
    assert st.devices[backlog_dev[0]]["accepted"] == BACKLOG
    kind = "postgresql" if "://" in store_spec else "sqlite"
    print(
        f"store {kind}: published {total}, stored {len(rows)}, "
        f"refused as replays {refused_n} ({len(replays)} sent again)"
    )


def test_default_client_id_is_stable_and_keeps_the_session(
    queueing_broker: int, tmp_path: Path
) -> None:
    """Without --client-id a receiver still has a persistent session under a stable id:
    frames published while it is killed are stored after it restarts."""
    reg_path = tmp_path / "registry.db"
    with Registry.open(reg_path) as reg:
        _, kid = reg.begin_device("ee" * 32, "pico-w", "site", None)
        reg.activate(kid)
        dev = (kid, *keys.derive(reg.master(kid), kid))
    db = str(tmp_path / "r.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATSOURCE_")}
    args = ["--from", f"mqtt://127.0.0.1:{queueing_broker}/atsource/up/#", "--db", db,
            "--registry", str(reg_path), "--quiet"]  # fmt: skip

    def ids(rx: Rx) -> list[str]:
        return [ln.rsplit(" as ", 1)[1] for ln in rx.lines if ln.startswith("receive: subscribed")]

    first = Rx(args, env)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", queueing_broker)
    pub.loop_start()
    try:
        infos = [pub.publish("atsource/up/x", seal(*dev, p), qos=1) for p in range(10)]
        for i in infos:
            i.wait_for_publish(timeout=10)
    finally:
        pub.disconnect()
        pub.loop_stop()
    second = Rx(args, env)
    try:

        def stored() -> int:
            with open_store(db) as s:
                return s.count()

        _wait(lambda: stored() >= 10, "queued frames not delivered", [second])
    finally:
        assert second.stop() == 130
    assert ids(first) == ids(second) and ids(first)[0].startswith("atsource-rx-")
    with open_store(db) as s:
        assert sorted(r.piv for r in s.readings()) == list(range(10))
