"""Transports under CPython against real servers: our MQTT client with a real Mosquitto (QoS 1,
reconnect with back-off) and our HTTP POST with a real http.server."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from fakes import Clock
from sensor import mqtt, transport

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60  # returns as soon as it listens
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto not installed (.ci/run installs it)")
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def subscribe(port: int, topic: str) -> tuple[paho.Client, list[bytes]]:
    got: list[bytes] = []
    ready = threading.Event()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.on_message = lambda _c, _u, msg: got.append(msg.payload)
    c.on_subscribe = lambda *_a: ready.set()
    c.connect("127.0.0.1", port)
    c.subscribe(topic, qos=1)
    c.loop_start()
    assert ready.wait(60)  # a limit for a broken broker, not a pace: returns on SUBACK
    return c, got


def wait_for(cond, timeout: float = 60.0) -> None:  # noqa: ANN001 - returns on progress
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_url_parsing() -> None:
    assert transport.parse_url("mqtts://u:p@broker.example:8884") == (
        "mqtts",
        "broker.example",
        8884,
        "u",
        "p",
        "/",
    )
    assert transport.parse_url("http://10.0.0.1/up/x")[1:3] == ("10.0.0.1", 80)
    for bad in ("broker:1883", "ftp://x", "mqtt://"):
        with pytest.raises(ValueError):
            transport.parse_url(bad)


def test_mqtt_qos1_publish_reconnect_and_backoff(broker: Broker) -> None:
    sub, got = subscribe(broker.port, "atsource/up")
    clock = Clock()
    t = transport.make(
        {"uplink": {"transport": "mqtt", "url": f"mqtt://127.0.0.1:{broker.port}"}},
        "atsource-test",
        clock,
    )
    assert isinstance(t, mqtt.MQTT)
    frames = [bytes([i]) * (50 + i) for i in range(5)]
    for f in frames[:3]:
        assert t.send(f)
    t.poll()
    clock.t += 60_000  # idle past half the keepalive: poll() pings
    t.poll()
    assert t.connects == 1
    wait_for(lambda: len(got) == 3)  # the subscriber has them before the broker goes
    broker.stop()
    assert not t.send(frames[3])  # broker gone: not confirmed, the frame stays queued
    assert not t.send(frames[3])  # and no new attempt before the back-off has passed
    broker.start()
    sub.loop_stop()
    sub, got2 = subscribe(broker.port, "atsource/up")
    assert not t.send(frames[3])  # still backing off (1 s, then 2 s)
    clock.t += 2_000
    assert t.send(frames[3]) and t.send(frames[4])
    assert t.connects == 2
    wait_for(lambda: len(got2) == 2)
    assert got[:3] == frames[:3] and got2 == frames[3:]
    t.close()
    sub.loop_stop()


def test_mqtt_refused_connection_is_not_a_crash(tmp_path: Path) -> None:
    clock = Clock()
    t = mqtt.MQTT(f"mqtt://127.0.0.1:{free_port()}", "t", "c", clock=clock)
    assert not t.send(b"x")
    clock.t += 1_000
    assert not t.send(b"x")


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 204
    bodies: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        n = int(self.headers["Content-Length"])
        self.bodies.append((self.path, self.headers["Content-Type"], self.rfile.read(n)))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_http_post_2xx_confirms_others_do_not() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    clock = Clock()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/uplink"
        t = transport.make({"uplink": {"transport": "http", "url": url}}, clock=clock)
        assert t.send(b"\xd0\x83frame")
        assert _Handler.bodies[-1] == (
            "/uplink",
            'application/cose; cose-type="cose-encrypt0"',
            b"\xd0\x83frame",
        )
        _Handler.status = 500
        assert not t.send(b"again")
        clock.t += 1_000
        _Handler.status = 200
        assert t.send(b"again")
    finally:
        srv.shutdown()


def test_hostlink_without_the_emulator_never_confirms() -> None:
    t = transport.make({})
    assert isinstance(t, transport.HostLink) and not t.send(b"x")
