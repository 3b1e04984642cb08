"""Small scripted worlds for emulator tests: a fixed list of events and a BME280 on the bus."""

from __future__ import annotations

from typing import Any

from atsource.emulator.bme280_model import Bme280Model


class ScriptedWorld:
    def __init__(
        self,
        start_us: int,
        events: list[tuple[Any, ...]] | None = None,
        i2c_bus: int = 0,
        env: tuple[float, float, float] = (20.0, 50.0, 101325.0),
    ):
        self.start_us = start_us
        self.end_us = start_us + 86_400_000_000
        self._events = sorted(events or [], key=lambda e: e[1])
        self._i = 0
        self.scans: list[tuple[int, int, int, int]] = []
        self.bme280 = Bme280Model()
        self.bme280.environment = lambda t: env
        self._bus = i2c_bus
        self.levels: dict[Any, int] = {}

    def events_until(self, t_us: int) -> list[tuple[Any, ...]]:
        out = []
        while self._i < len(self._events) and self._events[self._i][1] <= t_us:
            ev = self._events[self._i]
            self._i += 1
            if ev[0] == "adv" and not self._scanning(ev[1]):
                continue
            if ev[0] == "pin":
                self.levels[ev[2]] = ev[3]
            out.append(ev)
        return out

    def _scanning(self, t: int) -> bool:
        return any(s <= t < s + d for s, d, _, _ in self.scans)

    def i2c_device(self, bus: int, address: int) -> Any:
        if bus == self._bus and address == 0x76:
            return self.bme280
        return None

    def pin_level(self, pin: Any, t_us: int) -> int:
        return self.levels.get(pin, 1)

    def ble_scan(self, t_us: int, duration_us: int, interval_us: int, window_us: int) -> None:
        self.scans.append((t_us, duration_us or 10**15, interval_us, window_us))

    def ble_scan_stop(self, t_us: int) -> None:
        if self.scans:
            s, d, i, w = self.scans[-1]
            self.scans[-1] = (s, min(d, t_us - s), i, w)

    def ground_truth(self, window_s: int) -> list[dict[str, Any]]:
        return []
