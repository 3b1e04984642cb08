"""The world of a board on a desk: a BME280 in still air, idle beams, nobody around, a quiet
room (40 dB(A)) and clean air (PM2.5 5 ug/m3)."""

from __future__ import annotations

import time
from typing import Any

from ..boards import Board
from .bme280_model import Bme280Model
from .world_api import Event, I2CDevice


class BenchWorld:
    """Used when no scenario is given: steady 21.5 degC, 45 %RH, 101 325 Pa."""

    def __init__(self, board: Board, start_us: int | None = None) -> None:
        self.start_us = start_us if start_us is not None else int(time.time()) * 1_000_000
        self.end_us = self.start_us + 10 * 365 * 86_400_000_000
        self.board = board
        self.bme280 = Bme280Model()
        self.bme280.environment = lambda t_us: (21.5, 45.0, 101_325.0)
        self._bus = int(board.pins["i2c"]["id"])
        self._mic: Any = None
        self._pms: Any = None

    def events_until(self, t_us: int) -> list[Event]:
        return []

    def next_turn_after(self, t_us: int) -> int | None:
        return None

    def adverts_between(self, lo_us: int, hi_us: int) -> list[Event]:
        return []

    def i2c_device(self, bus: int, address: int) -> I2CDevice | None:
        if bus == self._bus and address == self.bme280.address:
            return self.bme280
        return None

    def i2s_device(self, bus: int) -> Any:
        if bus != self.board.pins.get("mic", {}).get("id"):
            return None
        if self._mic is None:
            from .mic_model import LevelProfile, MicModel

            self._mic = MicModel(LevelProfile(lambda t_us: 40.0))
        return self._mic

    def uart_device(self, uart: int) -> Any:
        if uart != self.board.pins.get("pm", {}).get("id"):
            return None
        if self._pms is None:
            from .pms5003_model import Pms5003Model

            self._pms = Pms5003Model(lambda t_us: (3.5, 5.0, 8.0))
        return self._pms

    def pin_level(self, pin: Any, t_us: int) -> int:
        # Beam-break receivers idle high (beam seen); the PIR output idles low.
        return 0 if pin == self.board.pins.get("pir") else 1

    def ble_scan(self, t_us: int, duration_us: int, interval_us: int, window_us: int) -> None:
        pass

    def ble_scan_stop(self, t_us: int) -> None:
        pass

    def ground_truth(self, window_s: int) -> list[dict[str, Any]]:
        return []
