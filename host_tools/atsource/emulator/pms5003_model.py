"""A Plantower PMS5003 particulate sensor at protocol level, on an emulated board's UART.

It follows the data manual (V2.5): after power-on it is awake in active mode and sends a
32-byte frame every 2.3 s (the "stable" sub-mode); commands (7 bytes, checksum) switch to
passive mode (0xE1 0), ask for a frame (0xE2), sleep (0xE4 0) or wake (0xE4 1). Mode and
sleep commands are acknowledged with the 8-byte answer ``42 4D 00 04 CMD DATA SUM``; a wake
is not. Asleep, the fan and laser are off and only a wake is heard. The fan takes 30 s to
reach speed: until then readings fall short in proportion (the manual: "stable data should be
got at least 30 seconds after the sensor wakeup").

Concentrations come from ``pm_at(t_us) -> (pm1, pm2_5, pm10)`` in ug/m3 (the ground truth),
with a reading noise of a few percent, rounded to whole ug/m3 as the sensor reports.
Faults: ``checksum_error_rate`` (a frame's byte corrupted on the line), ``silent`` intervals
(the sensor answers nothing), and a wrong baud rate (the board hears only garbage). Bytes
take 10 bit times each (8N1).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .scenario import US, mix64

FRAME_LEN = 28
ACTIVE_PERIOD_US = 2_300_000
WARMUP_US = 30 * US
ANSWER_US = 5_000  # the sensor's reaction time to a command
NOISE = 0.03  # relative reading noise


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFF


def frame(atm: tuple[int, int, int], cf1: tuple[int, int, int], counts: list[int]) -> bytes:
    words = [*cf1, *atm, *counts[:6], 0x9700]  # data 13: reserved (version 0x97, error 0)
    body = bytes((0x42, 0x4D, 0, FRAME_LEN)) + b"".join(
        (min(w, 0xFFFF)).to_bytes(2, "big") for w in words
    )
    return body + checksum(body).to_bytes(2, "big")


def answer(cmd: int, data: int) -> bytes:
    body = bytes((0x42, 0x4D, 0x00, 0x04, cmd, data & 0xFF))
    return body + checksum(body).to_bytes(2, "big")


class Pms5003Model:
    def __init__(
        self,
        pm_at: Callable[[int], tuple[float, float, float]],
        seed: int = 1,
        checksum_error_rate: float = 0.0,
        silent: list[tuple[int, int]] | None = None,
    ) -> None:
        self.pm_at = pm_at
        self.seed = seed
        self.error_rate = checksum_error_rate
        self.silent = silent or []
        self.baud = 9600
        self.active = True
        self.awake = True
        self.woke_us: int | None = None  # None: since power-on (warm long ago at t=0)
        self.next_active_us: int | None = None
        self.queue: list[tuple[int, bytes]] = []  # (arrival of the first byte's end, bytes)
        self.rx = bytearray()  # command bytes heard
        self.served: list[tuple[int, tuple[int, int, int]]] = []  # (time, atm values) sent
        self.corrupted: list[int] = []  # when each corrupted frame was sent
        self._rng = random.Random(f"{seed}/pms5003")
        self._last_tx_end = 0

    @property
    def byte_us(self) -> int:
        return 10 * US // 9600

    def _silent(self, t_us: int) -> bool:
        return any(a <= t_us < b for a, b in self.silent)

    def configure(self, cfg: dict[str, Any], t_us: int) -> None:
        self.baud = int(cfg.get("baud", 9600))
        if self.next_active_us is None:
            self.next_active_us = t_us + ACTIVE_PERIOD_US
            if self.woke_us is None:
                self.woke_us = t_us - WARMUP_US  # powered with the board, long ago enough

    def _send(self, t_us: int, data: bytes) -> None:
        if self._silent(t_us):
            return
        if self.baud != 9600:  # framing at the wrong rate: the board sees noise
            data = bytes(self._rng.getrandbits(8) for _ in data)
        start = max(t_us, self._last_tx_end)
        self._last_tx_end = start + len(data) * self.byte_us
        self.queue.append((start, data))

    def _reading(self, t_us: int) -> bytes:
        pm = self.pm_at(t_us)
        woke = self.woke_us if self.woke_us is not None else t_us - WARMUP_US
        spin = min(1.0, max(0.0, (t_us - woke) / WARMUP_US))
        h = mix64(self.seed * 1_000_003 + t_us)
        vals = []
        for k, v in enumerate(pm):
            u = ((h >> (16 * k)) & 0xFFFF) / 65535.0 - 0.5  # uniform noise, +/-NOISE/2 * 2
            vals.append(max(0, round(v * spin * (1.0 + 2.0 * NOISE * u))))
        atm = (vals[0], vals[1], vals[2])
        # CF=1 equals atmospheric below ~30 ug/m3 and reads higher above (manual's note).
        cf1 = tuple(v if v < 30 else round(30 + (v - 30) * 1.5) for v in atm)
        counts = [round(atm[2] * 60), round(atm[2] * 18), round(atm[1] * 6), round(atm[1]), 0, 0]
        f = bytearray(frame(atm, (cf1[0], cf1[1], cf1[2]), counts))
        if self.error_rate and (h >> 48) / 65536.0 < self.error_rate:
            f[10 + (h & 0xF)] ^= 0x10  # a bit flipped on the line: the checksum will not match
            self.corrupted.append(t_us)
        else:
            self.served.append((t_us, atm))
        return bytes(f)

    def _catch_up(self, t_us: int) -> None:
        # Active mode: a frame every 2.3 s while awake.
        while (
            self.active
            and self.awake
            and self.next_active_us is not None
            and self.next_active_us <= t_us
        ):
            t = self.next_active_us
            self._send(t, self._reading(t))
            self.next_active_us = t + ACTIVE_PERIOD_US

    def write(self, data: bytes, t_us: int) -> None:
        self._catch_up(t_us)
        if self.baud != 9600:
            return
        self.rx += data
        heard = t_us + len(data) * self.byte_us
        while len(self.rx) >= 7:
            if self.rx[0] != 0x42 or self.rx[1] != 0x4D:
                del self.rx[0]
                continue
            cmd, d = self.rx[2], self.rx[3] << 8 | self.rx[4]
            ok = checksum(bytes(self.rx[:5])) == (self.rx[5] << 8 | self.rx[6])
            del self.rx[:7]
            if ok and not self._silent(heard):
                self._command(cmd, d, heard + ANSWER_US)

    def _command(self, cmd: int, d: int, t: int) -> None:
        if not self.awake:
            if cmd == 0xE4 and d == 1:
                self.awake = True
                self.woke_us = t
                self.next_active_us = t + ACTIVE_PERIOD_US
            return
        if cmd == 0xE1:
            self.active = d == 1
            self.next_active_us = t + ACTIVE_PERIOD_US
            self._send(t, answer(cmd, d))
        elif cmd == 0xE2 and not self.active:
            self._send(t, self._reading(t))
        elif cmd == 0xE4 and d == 0:
            self._send(t, answer(cmd, d))
            self.awake = False

    def _byte_times(self) -> list[int]:
        out = []
        for start, data in self.queue:
            out.extend(start + (i + 1) * self.byte_us for i in range(len(data)))
        return out

    def arrivals(self, t_us: int) -> bytes:
        self._catch_up(t_us)
        out = bytearray()
        keep: list[tuple[int, bytes]] = []
        for start, data in self.queue:
            done = (t_us - start) // self.byte_us
            if done >= len(data):
                out += data
            elif done > 0:
                out += data[:done]
                keep.append((start + done * self.byte_us, data[done:]))
            else:
                keep.append((start, data))
        self.queue = keep
        return bytes(out)

    def eta(self, k: int, t_us: int) -> int | None:
        # Look ahead up to one active period for frames not yet generated.
        self._catch_up(t_us + ACTIVE_PERIOD_US)
        times = sorted(self._byte_times())
        if not times:
            return None
        return times[min(k, len(times)) - 1]

    def ground_truth_mean(
        self, t0_us: int, t1_us: int, step_us: int = 10 * US
    ) -> tuple[float, ...]:
        n = max(1, (t1_us - t0_us) // step_us)
        acc = [0.0, 0.0, 0.0]
        for i in range(n):
            v = self.pm_at(t0_us + i * step_us + step_us // 2)
            for k in range(3):
                acc[k] += v[k]
        return tuple(a / n for a in acc)
