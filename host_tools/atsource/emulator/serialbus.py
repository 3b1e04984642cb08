"""The host's side of the emulated boards' I2S and UART peripherals (rom/_vmachine.py).

A world wires devices to them through two optional methods (see ``world_api``):
``i2s_device(bus_id)`` returns a microphone model with ``samples(t_us, n, rate) -> bytes``
(n little-endian 32-bit mono slots covering [t_us, t_us + n / rate)) and ``startup_frames``
(frames after the clock starts during which it sends zeros), and
``uart_device(uart_id)`` a serial device model with ``configure(cfg, t_us)``,
``write(data, t_us)``, ``arrivals(t_us) -> bytes`` (what reached the board's RX pin by
``t_us``, consumed) and ``eta(k, t_us) -> int | None`` (when k more bytes will have arrived,
or the last byte that will come if fewer are on their way; None when nothing is).
"""

from __future__ import annotations

import json
from typing import Any


class UartPort:
    """One UART's receive FIFO: bytes move in from the device as virtual time passes; what
    overflows ``rxbuf`` is lost, as in a board's ring buffer."""

    def __init__(self, dev: Any) -> None:
        self.dev = dev
        self.fifo = bytearray()
        self.rxbuf = 256
        self.lost = 0

    def request(self, q: dict[str, Any], now_us: int, boot_us: int) -> str:
        op = q["op"]
        dev = self.dev
        if op == "init":
            self.rxbuf = int(q["cfg"].get("rxbuf", 256))
            self.fifo.clear()
            if dev is not None:
                dev.configure(q["cfg"], now_us)
            return "{}"
        if op == "deinit":
            return "{}"
        if op == "w":
            if dev is not None:
                dev.write(bytes.fromhex(q["d"]), now_us)
            return "{}"
        if dev is not None:
            self.fifo += dev.arrivals(now_us)
        if len(self.fifo) > self.rxbuf:
            self.lost += len(self.fifo) - self.rxbuf
            del self.fifo[self.rxbuf :]
        n = min(int(q["n"]), len(self.fifo))
        out = bytes(self.fifo[:n])
        del self.fifo[:n]
        want = int(q["n"]) - n
        eta = dev.eta(want, now_us) if dev is not None and want > 0 else None
        return json.dumps(
            {"d": out.hex(), "a": len(self.fifo), "t": None if eta is None else eta - boot_us}
        )


def i2s_request(world: Any, q: dict[str, Any], now_us: int) -> str:
    """A block of samples for an I2S read: the world's microphone, or silence."""
    get = getattr(world, "i2s_device", None)
    dev = get(q["id"]) if get is not None else None
    n = int(q["n"])
    if dev is None or q.get("bits") != 32 or q.get("ch", 1) != 1:
        return json.dumps([n, ""])  # nothing drives SD: zeros
    # The microphone starts STARTUP_FRAMES after its clock does, and sends zeros until then.
    zeros = min(n, max(0, getattr(dev, "startup_frames", 0) - int(q.get("f", 0))))
    rate = int(q["rate"])
    t = now_us + zeros * 1_000_000 // rate
    rest = dev.samples(t, n - zeros, rate).hex() if n > zeros else ""
    return json.dumps([zeros, rest])
