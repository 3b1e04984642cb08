"""The field's uplink path on the emulated boards: the firmware's own MQTT client (plain and
TLS) and HTTP transport, run by the real MicroPython VM, talk through the bridged sockets to a
real Mosquitto and a real HTTP server on loopback; outages and refusals are real failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from atsource import paths
from atsource.boards import load_board
from atsource.emulator.api import prepare_flash
from atsource.emulator.engine import EmulatedBoard
from servers import HTTPSink, free_port, make_ca, start_mosquitto, stop, tls_listener
from worlds import ScriptedWorld

START = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z
S = 1_000_000

JOIN = """
import network, time
w = network.WLAN(network.STA_IF)
w.active(True)
w.connect("atsource-emulated", "")
while not w.isconnected():
    time.sleep_ms(100)
"""


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    d = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_ca(d)
    port = free_port()
    proc = start_mosquitto(d, *tls_listener(port, ca, cert, key))
    yield port, ca
    stop(proc)


class Subscriber:
    def __init__(self, port: int, topic: str, tls_ca: Path | None = None) -> None:
        self.got: list[bytes] = []
        self.ready = threading.Event()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if tls_ca is not None:
            self.c.tls_set(ca_certs=str(tls_ca))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: self.ready.set()
        self.c.on_message = lambda c, u, m: self.got.append(bytes(m.payload))
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert self.ready.wait(30), "no SUBACK from the broker"

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _board(board: str, flash: Path, main: str, world=None) -> EmulatedBoard:
    prepare_flash(load_board(board), flash, firmware=paths.FIRMWARE)
    (flash / "main.py").write_text(main)
    return EmulatedBoard(board, flash, world=world or ScriptedWorld(START), start_us=START, seed=1)


def _lines(emu: EmulatedBoard) -> list[str]:
    return [line for _, line in emu.lines]


def test_firmware_mqtt_client_publishes_over_tls(
    board_name: str, flash: Path, tls_broker: tuple[int, Path]
) -> None:
    port, ca = tls_broker
    sub = Subscriber(port, "atsource/up/tls", ca)
    main = JOIN + (
        "from sensor.mqtt import MQTT\n"
        f"ca = open('ca.pem', 'rb').read()\n"
        f"m = MQTT('mqtts://localhost:{port}', 'atsource/up/tls', 'dev-{board_name}', ca=ca)\n"
        "for i in range(3):\n"
        "    print('sent', i, m.send(b'frame-%d' % i))\n"
        "m.close()\n"
        "print('connects', m.connects)\n"
    )
    (flash / "ca.pem").write_bytes(ca.read_bytes())
    emu = _board(board_name, flash, main)
    try:
        emu.run(duration_us=60 * S)
    finally:
        sub.close()
    lines = _lines(emu)
    assert [x for x in lines if x.startswith(("sent", "connects"))] == [
        "sent 0 True",
        "sent 1 True",
        "sent 2 True",
        "connects 1",
    ], lines
    assert sub.got == [b"frame-0", b"frame-1", b"frame-2"]


def test_a_tls_session_takes_the_heap_the_port_gives_mbedtls(
    board_name: str, flash: Path, tls_broker: tuple[int, Path]
) -> None:
    # rp2 builds mbedTLS with its allocator on the MicroPython heap (its record buffers:
    # board tls_heap); esp32 keeps them in ESP-IDF's heap (docs/emulator.md).
    port, ca = tls_broker
    main = JOIN + (
        "import gc\n"
        "from sensor import ipnet\n"
        "ca = open('ca.pem', 'rb').read()\n"
        "a = gc.mem_alloc()\n"
        f"s = ipnet.connect('localhost', {port}, True, ca)\n"
        "print('tls heap', gc.mem_alloc() - a)\n"
        "s.close()\n"
    )
    (flash / "ca.pem").write_bytes(ca.read_bytes())
    emu = _board(board_name, flash, main)
    emu.run(duration_us=30 * S)
    took = [int(x.split()[-1]) for x in _lines(emu) if x.startswith("tls heap")]
    assert len(took) == 1, _lines(emu)
    tls_heap = load_board(board_name).tls_heap
    assert (tls_heap > 0) == (board_name == "pico-w")
    # what connecting itself allocates (strings, the socket object) comes on top: < 4 KB
    assert tls_heap <= took[0] < tls_heap + 4096


def test_tls_refuses_a_broker_the_ca_did_not_sign(
    flash: Path, tls_broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, _ = tls_broker
    other_ca, _, _ = make_ca(tmp_path)
    (flash / "ca.pem").write_bytes(other_ca.read_bytes())
    main = JOIN + (
        "from sensor import ipnet\n"
        "try:\n"
        f"    ipnet.connect('localhost', {port}, True, open('ca.pem', 'rb').read())\n"
        "    print('tls accepted')\n"
        "except OSError as e:\n"
        "    print('tls refused', e.errno)\n"
    )
    emu = _board("pico-w", flash, main)
    emu.run(duration_us=30 * S)
    assert "tls refused -9984" in _lines(emu)  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED


def test_firmware_http_transport_posts_to_a_real_server(board_name: str, flash: Path) -> None:
    sink = HTTPSink()
    main = JOIN + (
        "from sensor.httppost import HTTP\n"
        f"h = HTTP('http://127.0.0.1:{sink.port}/up')\n"
        "print('posted', h.send(b'\\x01frame'))\n"
    )
    emu = _board(board_name, flash, main)
    try:
        emu.run(duration_us=30 * S)
    finally:
        sink.close()
    assert "posted True" in _lines(emu)
    assert sink.bodies == [("/up", b"\x01frame", 'application/cose; cose-type="cose-encrypt0"')]


def test_outage_and_unreachable_addresses_fail_for_real(flash: Path, broker: int) -> None:
    # The network is down from 10 s to 70 s of the run: a connection attempt fails inside it
    # and succeeds again after; an address off the loopback is never reached.
    world = ScriptedWorld(START, [("net", START + 10 * S, False), ("net", START + 70 * S, True)])
    main = JOIN + (
        "import socket\n"
        "def attempt(tag):\n"
        "    s = socket.socket()\n"
        "    s.settimeout(5)\n"
        "    try:\n"
        f"        s.connect(socket.getaddrinfo('localhost', {broker})[0][-1])\n"
        "        print(tag, 'connected')\n"
        "    except OSError as e:\n"
        "        print(tag, 'failed', e.errno)\n"
        "    s.close()\n"
        "attempt('before')\n"
        "time.sleep(20)\n"
        "attempt('outage')\n"
        "time.sleep(60)\n"
        "w.connect('atsource-emulated', '')\n"
        "while not w.isconnected():\n"
        "    time.sleep_ms(100)\n"
        "attempt('after')\n"
        "s = socket.socket()\n"
        "try:\n"
        "    s.connect(('10.0.0.1', 80))\n"
        "    print('private connected')\n"
        "except OSError as e:\n"
        "    print('private failed', e.errno)\n"
    )
    emu = _board("esp32-devkitc", flash, main, world)
    emu.run(duration_us=120 * S)
    lines = _lines(emu)
    assert "before connected" in lines, lines
    assert "outage failed -202" in lines or "outage failed 113" in lines, lines
    assert "after connected" in lines, lines
    assert "private failed 113" in lines, lines  # EHOSTUNREACH
