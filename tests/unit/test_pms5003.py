"""The firmware's PMS5003 driver (``sensor.pms5003``) against the emulator's protocol model,
over a UART on a virtual clock (the host side of the emulated boards' UART, ``serialbus``)."""

from __future__ import annotations

import json

import pytest
from atsource.emulator.pms5003_model import Pms5003Model, answer, frame
from atsource.emulator.serialbus import UartPort
from sensor import pms5003

T0 = 1_780_272_000_000_000
TRUTH = (7.0, 11.0, 19.0)


class VirtualUart:
    """machine.UART's read/write/any on a virtual clock: reads wait (in virtual time) until
    the bytes asked for are in or ``timeout_ms`` has passed, as rom/_vmachine.UART does."""

    def __init__(self, model: Pms5003Model | None, timeout_ms: int = 100) -> None:
        self.now = T0
        self.timeout = timeout_ms * 1000
        self.port = UartPort(model)
        self._req({"op": "init", "cfg": {"baud": 9600, "rxbuf": 256}})

    def _req(self, q: dict) -> dict:
        return json.loads(self.port.request(q, self.now, 0))

    def write(self, data: bytes) -> int:
        self._req({"op": "w", "d": bytes(data).hex()})
        return len(data)

    def any(self) -> int:
        return self._req({"op": "r", "n": 0})["a"]

    def readinto(self, mv: memoryview) -> int | None:
        out = b""
        end = self.now + self.timeout
        while True:
            r = self._req({"op": "r", "n": len(mv) - len(out)})
            out += bytes.fromhex(r["d"])
            if len(out) >= len(mv):
                break
            t = r["t"] if r["t"] is not None and r["t"] < end else end
            if t <= self.now:
                break
            self.now = t
        mv[: len(out)] = out
        return len(out) or None

    def sleep_ms(self, ms: int) -> None:
        self.now += ms * 1000

    @property
    def ticks_ms(self) -> int:
        return (self.now // 1000) & 0x3FFFFFFF


def make(**kw: object) -> tuple[pms5003.Pms5003, Pms5003Model, VirtualUart]:
    model = Pms5003Model(lambda t: TRUTH, seed=2, **kw)  # type: ignore[arg-type]
    uart = VirtualUart(model)
    return pms5003.Pms5003(uart), model, uart


def test_commands_carry_the_manuals_checksums() -> None:
    # The data manual's examples: read 42 4D E2 00 00 01 71, passive 42 4D E1 00 00 01 70,
    # sleep 42 4D E4 00 00 01 73, wake 42 4D E4 00 01 01 74.
    assert pms5003.command(0xE2, 0).hex() == "424de200000171"
    assert pms5003.command(0xE1, 0).hex() == "424de100000170"
    assert pms5003.command(0xE4, 0).hex() == "424de400000173"
    assert pms5003.command(0xE4, 1).hex() == "424de400010174"


def test_parse_takes_the_atmospheric_words_4_to_6() -> None:
    buf = bytearray(frame((5, 9, 14), (6, 10, 15), [1, 2, 3, 4, 5, 6]))
    assert pms5003.parse(buf, 32) == (0, True)
    assert pms5003.values(buf, 0) == (5, 9, 14)
    buf[20] ^= 1
    assert pms5003.parse(buf, 32) == (0, False)


def test_parse_finds_a_frame_after_garbage_and_an_acknowledgement() -> None:
    good = frame((5, 9, 14), (6, 10, 15), [0] * 6)
    buf = bytearray(b"\x00\x42\x13" + answer(0xE1, 0) + good)
    i, ok = pms5003.parse(buf, len(buf))
    assert (i, ok) == (3, False)  # the 8-byte answer: a header with length 4, not a frame
    rest = buf[i + 2 :]
    j, ok = pms5003.parse(rest, len(rest))
    assert ok and j == 6 and pms5003.values(rest, j) == (5, 9, 14)


def test_setup_switches_to_passive_and_sleeps_then_reads_after_warm_up() -> None:
    pm, model, uart = make()
    pm.setup()  # active frames arrive meanwhile: the driver resynchronises on its answer
    assert not model.active and not model.awake
    cycle = pms5003.AirCycle(pm, every_ms=300_000, warmup_ms=30_000, reads=3, gap_ms=2000)
    readings = []
    for _ in range(8):
        r, wait = cycle.step(uart.ticks_ms)
        if r is not None:
            readings.append(r)
        uart.sleep_ms(wait)
    assert len(readings) == 6  # two cycles of three readings
    for r in readings:
        assert all(abs(v - t) <= 1 for v, t in zip(r, TRUTH, strict=True))
    assert not model.awake  # asleep between cycles: fan and laser off
    assert pm.faults == 0


def test_a_reading_before_the_fan_is_up_falls_short() -> None:
    # Why the cycle waits 30 s: right after a wake the model's fan is not at speed.
    pm, model, uart = make()
    pm.setup()
    pm.wake()
    uart.sleep_ms(5000)
    early = pm.read()
    uart.sleep_ms(30_000)
    late = pm.read()
    assert early is not None and late is not None
    assert early[1] < 0.5 * TRUTH[1] and abs(late[1] - TRUTH[1]) <= 1


def test_checksum_errors_are_counted_and_the_next_frame_is_read() -> None:
    pm, model, uart = make(checksum_error_rate=0.3)
    pm.wake()
    uart._req({"op": "w", "d": pms5003.command(0xE1, 0).hex()})  # passive, set by hand
    uart.sleep_ms(100)
    good = []
    for _ in range(40):
        r = pm.read()
        if r is not None:
            good.append(r)
        uart.sleep_ms(1000)
    bad = len(model.corrupted)
    assert 0 < bad < 40
    assert pm.checksum_errors == bad  # each corrupted frame counted once
    assert len(good) == 40 - bad and pm.missing == 0
    assert all(abs(r[1] - TRUTH[1]) <= 1 for r in good)  # no corrupted value got through


def test_a_sensor_that_stops_answering_counts_missing_frames() -> None:
    pm, model, uart = make(silent=[(T0 + 60_000_000, T0 + 120_000_000)])
    pm.setup()
    pm.wake()
    uart.sleep_ms(61_000)
    assert pm.read() is None and pm.missing == 1
    uart.sleep_ms(60_000)
    assert pm.read() is not None


def test_no_sensor_on_the_uart_is_enodev() -> None:
    pm = pms5003.Pms5003(VirtualUart(None))
    with pytest.raises(OSError) as exc:
        pm.setup()
    assert exc.value.args[0] == 19


def test_air_window_means_and_maxima_in_tenths() -> None:
    w = pms5003.AirWindow()
    for r in ((5, 10, 15), (6, 13, 20), (5, 11, 16)):
        w.add(r)
    assert w.close() == {
        "pm1_mean": 53,  # 5.33 -> 5.3
        "pm2_5_mean": 113,  # 11.33
        "pm10_mean": 170,
        "pm2_5_max": 130,
        "pm10_max": 200,
        "samples": 3,
    }
    assert w.close() is None


def test_cycle_survives_the_tick_counter_wrapping() -> None:
    # ticks_ms wraps at 2**30 (about 12 days): the cycle's waits stay right across it.
    class Stub:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def wake(self) -> None:
            self.calls.append("wake")

        def sleep(self) -> None:
            self.calls.append("sleep")

        def read(self) -> tuple[int, int, int]:
            self.calls.append("read")
            return (1, 2, 3)

    stub = Stub()
    cycle = pms5003.AirCycle(stub, every_ms=300_000, warmup_ms=30_000, reads=1)
    now = (1 << 30) - 10_000  # 10 s before the wrap
    assert cycle.step(now) == (None, 30_000)
    now = (now + 29_000) & 0x3FFFFFFF  # past the wrap, 1 s early
    assert cycle.step(now) == (None, 1000)
    now = (now + 1000) & 0x3FFFFFFF
    assert cycle.step(now) == ((1, 2, 3), 270_000)
    assert stub.calls == ["wake", "read", "sleep"]
