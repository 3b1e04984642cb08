"""The firmware's BME280 driver (``sensor.bme280``) against the emulator's register model."""

from __future__ import annotations

import dataclasses
import errno
import itertools
import types
from pathlib import Path

import pytest
from atsource.emulator.bme280_model import DEFAULT_CALIBRATION, Bme280Model
from sensor import bme280

T0 = 1_700_000_000_000_000

OTHER_CALIBRATION = dataclasses.replace(
    DEFAULT_CALIBRATION,
    dig_T1=27504,
    dig_T2=26435,
    dig_T3=-1000,
    dig_P1=36477,
    dig_P2=-10685,
    dig_P4=2855,
    dig_P5=140,
    dig_P7=15500,
    dig_P8=-14600,
    dig_P9=6000,
    dig_H2=362,
    dig_H3=3,
    dig_H4=313,
    dig_H5=-50,
)


class VirtualTime:
    """The only part of MicroPython's ``time`` the driver uses, on a virtual clock."""

    def __init__(self) -> None:
        self.now_us = T0
        self.slept_ms = 0

    def sleep_ms(self, ms: int) -> None:
        assert isinstance(ms, int) and ms >= 0
        self.now_us += ms * 1000
        self.slept_ms += ms


class MachineI2C:
    """``machine.I2C``'s memory methods over the model; a missing device NACKs with ENODEV.

    Errors carry the bare errno as MicroPython raises them: ``args == (19,)`` (so ``errno`` is
    None on CPython; portable code reads ``args[0]``).
    """

    def __init__(self, device: Bme280Model, clock: VirtualTime) -> None:
        self.device = device
        self.clock = clock
        self.transactions = 0

    def _target(self, addr: int) -> Bme280Model:
        self.transactions += 1
        if addr != self.device.address or not self.device.present:
            raise OSError(errno.ENODEV)
        return self.device

    def readfrom_mem(self, addr: int, reg: int, n: int) -> bytes:
        dev = self._target(addr)
        dev.write(bytes([reg]), self.clock.now_us)
        return dev.read(n, self.clock.now_us)

    def readfrom_mem_into(self, addr: int, reg: int, buf: bytearray | memoryview) -> None:
        buf[:] = self.readfrom_mem(addr, reg, len(buf))

    def writeto_mem(self, addr: int, reg: int, buf: bytes) -> None:
        self._target(addr).write(bytes([reg]) + bytes(buf), self.clock.now_us)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> VirtualTime:
    vt = VirtualTime()
    monkeypatch.setattr(bme280, "time", vt)
    return vt


def make(
    clock: VirtualTime, env: list[tuple[float, float, float]], **kwargs: object
) -> tuple[bme280.BME280, Bme280Model, MachineI2C]:
    cal = kwargs.pop("calibration", DEFAULT_CALIBRATION)
    model = Bme280Model(calibration=cal, environment=lambda t_us: env[0])  # type: ignore[arg-type]
    i2c = MachineI2C(model, clock)
    return bme280.BME280(i2c, **kwargs), model, i2c  # type: ignore[arg-type]


@pytest.mark.parametrize("cal", [DEFAULT_CALIBRATION, OTHER_CALIBRATION], ids=["real", "other"])
def test_readings_match_the_environment(clock: VirtualTime, cal: object) -> None:
    env = [(20.0, 50.0, 101325.0)]
    sensor, _, _ = make(clock, env, calibration=cal)
    worst = [0.0, 0.0, 0.0]
    for t_c, h_rh, p_pa in itertools.product(
        [-39.9 + 6.1937 * i for i in range(21)],
        [0.3 + 4.9731 * i for i in range(21)],
        [30000 + 8123.47 * i for i in range(10)],
    ):
        env[0] = (t_c, h_rh, p_pa)
        t, p, h = sensor.read()
        assert type(t) is int and type(p) is int and type(h) is int
        errors = (abs(t / 100 - t_c), abs(p - p_pa), abs(h / 100 - h_rh))
        worst = [max(w, e) for w, e in zip(worst, errors, strict=True)]
    assert worst[0] <= 0.01, worst
    assert worst[1] <= 1, worst
    # Humidity cannot always reach 0.01 %RH: the integer formula halves adc_H first, so its
    # output moves in steps of 0.010..0.013 %RH; half a step plus rounding to 0.01 %RH gives up
    # to 0.0115. Measured worst over this grid: 0.0081 degC, 0.53 Pa, 0.0104 %RH.
    assert worst[2] <= 0.012, worst


def test_extremes_and_clamping(clock: VirtualTime) -> None:
    env = [(85.0, 100.0, 110000.0)]
    sensor, _, _ = make(clock, env)
    assert sensor.read() == (8500, 110000, 10000)
    env[0] = (-40.0, 0.0, 30000.0)
    assert sensor.read() == (-4000, 30000, 0)
    env[0] = (-55.0, -3.0, 25000.0)  # beyond the sensor's range: the model clamps
    assert sensor.read() == (-4000, 30000, 0)


def test_forced_conversion_is_waited_for(clock: VirtualTime) -> None:
    env = [(23.45, 61.0, 98765.0)]
    sensor, model, i2c = make(clock, env, osrs_t=2, osrs_p=5, osrs_h=3)
    start = clock.slept_ms
    before = i2c.transactions
    assert sensor.read() == (2345, 98765, 6100)
    # 1 + 4 + 32.5 + 8.5 = 46 ms typical: slept exactly that, one status poll, no busy loop.
    assert clock.slept_ms - start == 46
    assert i2c.transactions - before == 4  # ctrl_hum, ctrl_meas, status, data
    assert model.read(1, clock.now_us) == b"\x00"  # status (pointer after data wraps? no: 0xFF)


def test_skipped_measurements_read_none(clock: VirtualTime) -> None:
    env = [(18.0, 40.0, 100000.0)]
    sensor, _, _ = make(clock, env, osrs_p=0, osrs_h=0)
    assert sensor.read() == (1800, None, None)
    with pytest.raises(ValueError):
        make(clock, env, osrs_t=0)
    with pytest.raises(ValueError):
        make(clock, env, osrs_h=6)


def test_wrong_chip_id(clock: VirtualTime, monkeypatch: pytest.MonkeyPatch) -> None:
    from atsource.emulator import bme280_model

    monkeypatch.setattr(bme280_model, "CHIP_ID", 0x58)  # a BMP280 answers at the address
    with pytest.raises(OSError) as err:
        make(clock, [(20.0, 50.0, 101325.0)])
    assert err.value.args == (19,)  # ENODEV, message-free as MicroPython raises it


def test_absent_sensor(clock: VirtualTime) -> None:
    model = Bme280Model()
    model.present = False
    with pytest.raises(OSError) as err:
        bme280.BME280(MachineI2C(model, clock))  # type: ignore[arg-type]
    assert err.value.args == (errno.ENODEV,)
    with pytest.raises(OSError):
        bme280.BME280(MachineI2C(Bme280Model(), clock), address=0x77)  # type: ignore[arg-type]


def test_sensor_pulled_off_and_back(clock: VirtualTime) -> None:
    env = [(21.0, 45.0, 101000.0)]
    sensor, model, _ = make(clock, env)
    assert sensor.read() == (2100, 101000, 4500)
    model.present = False
    with pytest.raises(OSError) as err:
        sensor.read()
    assert err.value.args == (errno.ENODEV,)
    with pytest.raises(OSError):
        sensor.reset()
    model.present = True  # plugged in again: powered up with registers at reset values
    sensor.reset()
    env[0] = (22.5, 55.5, 100500.0)
    assert sensor.read() == (2250, 100500, 5550)


def test_read_heals_a_power_cycled_sensor_without_reset(clock: VirtualTime) -> None:
    # ctrl_hum is volatile; the driver rewrites it on every read, so humidity is not lost.
    env = [(19.0, 70.0, 99000.0)]
    sensor, model, _ = make(clock, env)
    model.present = False
    model.present = True
    assert sensor.read() == (1900, 99000, 7000)


def test_reset_waits_for_the_nvm_copy(clock: VirtualTime) -> None:
    env = [(20.0, 50.0, 101325.0)]
    sensor, _, _ = make(clock, env)
    start = clock.slept_ms
    sensor.reset()
    assert clock.slept_ms - start == 2  # the model's NVM copy (im_update) takes 2 ms


class StuckI2C(MachineI2C):
    """A bus whose sensor never finishes converting."""

    def readfrom_mem_into(self, addr: int, reg: int, buf: bytearray | memoryview) -> None:
        super().readfrom_mem_into(addr, reg, buf)
        if reg == 0xF3:
            buf[0] |= 0x08


def test_conversion_timeout(clock: VirtualTime) -> None:
    sensor = bme280.BME280(StuckI2C(Bme280Model(), clock))  # type: ignore[arg-type]
    start = clock.slept_ms
    with pytest.raises(OSError) as err:
        sensor.read()
    assert err.value.args == (110,)  # ETIMEDOUT
    # 8 ms typical conversion, then a bounded 50 ms of 1 ms polls.
    assert clock.slept_ms - start == 8 + 50


def test_no_buffer_allocation_per_read(clock: VirtualTime) -> None:
    env = [(20.0, 50.0, 101325.0)]
    sensor, _, _ = make(clock, env)
    buf, mv = sensor._buf, sensor._mv
    sensor.read()
    assert sensor._buf is buf and sensor._mv is mv and len(buf) == 8


def test_driver_uses_only_the_allowed_surface() -> None:
    # Common subset: the driver imports only struct, time (sleep_ms) and micropython.const.
    src = Path(bme280.__file__).read_text(encoding="utf-8")
    imports = sorted(line for line in src.splitlines() if line.startswith(("import", "from")))
    assert imports == ["from micropython import const", "import struct", "import time"]
    assert "float(" not in src and " / " not in src
    assert len(src.splitlines()) < 200
    assert isinstance(bme280.time, types.ModuleType)
