"""The contract between the emulator engine and the simulated world around a board.

The engine runs the firmware on the MicroPython VM and owns the virtual clock. Whenever the
firmware sleeps, the engine asks the world for the input events up to the wake-up time and
delivers them to the firmware at their own timestamps. Reads that need the world's state at one
instant (an I2C transaction, a pin level) are answered synchronously.

Times are integers: microseconds since the Unix epoch (``t_us``). The world is open-loop: what
the firmware does never changes what happens in the street, so the world can generate events
ahead of the firmware and ground truth does not depend on the firmware at all.

Events are plain tuples (cheap to build and to ship to the VM), first field the kind:

- ``("pin", t_us, pin, level)``: an input pin changed level (0 or 1). ``pin`` is the board's
  pin name as used by ``machine.Pin`` (an int GPIO number, or a string such as ``"LED"``).
- ``("adv", t_us, addr_type, addr, adv_type, rssi, adv_data)``: a BLE advertising report, only
  while a scan is active. ``addr`` is 6 bytes, ``addr_type`` 0 public / 1 random, ``adv_data``
  the raw AD structures (bytes), ``rssi`` in dBm.
- ``("power", t_us, off_us)``: the board loses power for ``off_us`` microseconds.
- ``("net", t_us, up)``: the network (Wi-Fi access point / broker path) goes down or comes back.

A world may also wire an I2S microphone and UART devices: optional methods ``i2s_device(bus)``
and ``uart_device(uart_id)``, whose models the engine drives as ``serialbus.py`` describes
(a world without them has nothing on those buses).
"""

from __future__ import annotations

from typing import Any, Protocol

Event = tuple[Any, ...]


class I2CDevice(Protocol):
    """A peripheral on an emulated I2C bus, addressed by 7-bit ``address``.

    ``write`` carries the bytes of one write transaction (for register devices the first byte
    is the register pointer). ``read`` returns ``n`` bytes of one read transaction. A device
    that is absent (pulled off the bus) has ``present`` False: the bus then NACKs.
    """

    address: int
    present: bool

    def write(self, data: bytes, t_us: int) -> None: ...

    def read(self, n: int, t_us: int) -> bytes: ...


class World(Protocol):
    """What the engine needs from a scenario world."""

    start_us: int
    end_us: int

    def events_until(self, t_us: int) -> list[Event]:
        """Events after the previous call's bound, up to and including ``t_us``, in time order."""
        ...

    def i2c_device(self, bus: int, address: int) -> I2CDevice | None:
        """The device at ``address`` on bus ``bus`` (None if nothing is wired there)."""
        ...

    def pin_level(self, pin: Any, t_us: int) -> int:
        """The level of an input pin at ``t_us`` (1 idle-high lines included)."""
        ...

    def ble_scan(self, t_us: int, duration_us: int, interval_us: int, window_us: int) -> None:
        """The firmware started an active scan; adverts for it appear in ``events_until``.

        ``duration_us`` 0 means scan until ``ble_scan_stop``.
        """
        ...

    def ble_scan_stop(self, t_us: int) -> None: ...

    def ground_truth(self, window_s: int) -> list[dict[str, Any]]:
        """Per wall-clock-aligned window of ``window_s`` seconds, what really happened."""
        ...
