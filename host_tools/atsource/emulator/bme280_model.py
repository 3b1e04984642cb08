"""Register-level model of a Bosch BME280 on I2C, for the emulated boards.

The model answers I2C transactions the way the chip does (BME280 datasheet, BST-BME280-DS002):
chip id, soft reset, the calibration NVM, ctrl_hum latched by a ctrl_meas write, forced and
normal mode with the typical conversion time, and data registers holding raw ADC values. The
raw values are found by inverting the datasheet's integer compensation, choosing among the
nearest codes those that suit its double-precision compensation too, so any driver that
implements either set of datasheet formulas reads back the environment the scenario asked for.

Simplifications, each harmless to a driver: no noise, no IIR filter, and every enabled
measurement delivers the full 20-bit (pressure, temperature) or 16-bit (humidity) result
whatever the oversampling, so emulated readings do not step by the coarser resolution a real
chip has at low oversampling.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import astuple, dataclass
from functools import lru_cache
from typing import Any

Environment = Callable[[int], tuple[float, float, float]]
"""``(t_us) -> (temperature_c, humidity_rh, pressure_pa)``."""

CHIP_ID = 0x60
RESET_COMMAND = 0xB6

REG_CALIB_LOW = 0x88  # 0x88..0xA1: dig_T1..dig_P9, reserved 0xA0, dig_H1
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB_HIGH = 0xE1  # 0xE1..0xE7: dig_H2..dig_H6
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_DATA = 0xF7  # press msb/lsb/xlsb, temp msb/lsb/xlsb, hum msb/lsb

STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01

MODE_SLEEP = 0
MODE_NORMAL = 3

SKIPPED_20BIT = 0x80000
SKIPPED_16BIT = 0x8000

# Sensor operating range (datasheet table 1); the environment is clamped to it.
T_RANGE_C = (-40.0, 85.0)
H_RANGE_RH = (0.0, 100.0)
P_RANGE_PA = (30000.0, 110000.0)

NVM_COPY_US = 2000  # start-up time after a soft reset, while im_update is set
_OSRS_FACTOR = (0, 1, 2, 4, 8, 16, 16, 16)
_T_STANDBY_US = (500, 62500, 125000, 250000, 500000, 1000000, 10000, 20000)

_U16 = (0, 0xFFFF)
_S16 = (-0x8000, 0x7FFF)
_FIELD_RANGES = {
    "dig_T1": _U16,
    "dig_P1": _U16,
    "dig_H1": (0, 0xFF),
    "dig_H3": (0, 0xFF),
    "dig_H4": (-0x800, 0x7FF),
    "dig_H5": (-0x800, 0x7FF),
    "dig_H6": (-0x80, 0x7F),
}


@dataclass(frozen=True)
class Calibration:
    """The factory trimming parameters, as the datasheet (section 4.2.2) names them."""

    dig_T1: int
    dig_T2: int
    dig_T3: int
    dig_P1: int
    dig_P2: int
    dig_P3: int
    dig_P4: int
    dig_P5: int
    dig_P6: int
    dig_P7: int
    dig_P8: int
    dig_P9: int
    dig_H1: int
    dig_H2: int
    dig_H3: int
    dig_H4: int
    dig_H5: int
    dig_H6: int

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            lo, hi = _FIELD_RANGES.get(name, _S16)
            if not lo <= value <= hi:
                raise ValueError(f"{name}={value} outside {lo}..{hi}")

    def to_registers(self) -> tuple[bytes, bytes]:
        """The NVM image: 26 bytes at 0x88..0xA1 and 7 bytes at 0xE1..0xE7."""
        c = self
        low = struct.pack(
            "<HhhHhhhhhhhhBB",
            *astuple(self)[:12],
            0,  # 0xA0 is reserved
            c.dig_H1,
        )
        # dig_H4 and dig_H5 are 12-bit values sharing the nibbles of 0xE5 (datasheet table 16).
        high = struct.pack(
            "<hBBBBb",
            c.dig_H2,
            c.dig_H3,
            (c.dig_H4 >> 4) & 0xFF,
            ((c.dig_H5 & 0x0F) << 4) | (c.dig_H4 & 0x0F),
            (c.dig_H5 >> 4) & 0xFF,
            c.dig_H6,
        )
        return low, high

    @classmethod
    def from_registers(cls, low: bytes, high: bytes) -> Calibration:
        """Parse the NVM image read from 0x88..0xA1 and 0xE1..0xE7."""
        tp = struct.unpack_from("<HhhHhhhhhhhh", low)
        h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", bytes(high[:7]))
        return cls(
            *tp,
            dig_H1=low[25],
            dig_H2=h2,
            dig_H3=h3,
            dig_H4=(e4 << 4) | (e5 & 0x0F),
            dig_H5=(e6 << 4) | (e5 >> 4),
            dig_H6=h6,
        )


# Calibration of a real BME280 as dumped from its NVM and published hard-coded in the receiver of
# a home weather station (github.com/arthurgargon/smarthome, devices/meteo/reciever/src/vw/vw.ino).
# dig_H3 = 0 and the dig_P3/P6/P7/P8/P9 values are what most parts carry.
DEFAULT_CALIBRATION = Calibration(
    dig_T1=28209,
    dig_T2=26575,
    dig_T3=50,
    dig_P1=37882,
    dig_P2=-10739,
    dig_P3=3024,
    dig_P4=6140,
    dig_P5=-8,
    dig_P6=-7,
    dig_P7=9900,
    dig_P8=-10230,
    dig_P9=4285,
    dig_H1=75,
    dig_H2=354,
    dig_H3=0,
    dig_H4=339,
    dig_H5=0,
    dig_H6=30,
)


# Datasheet section 4.2.3 / 8.2, transcribed to Python ints. Python's >> floors like the
# arithmetic shift the reference code relies on; only the C division needs care (it truncates).


def compensate_t(adc_t: int, cal: Calibration) -> tuple[int, int]:
    """``(t_fine, T)`` with T in 0.01 degC (``BME280_compensate_T_int32``)."""
    var1 = (((adc_t >> 3) - (cal.dig_T1 << 1)) * cal.dig_T2) >> 11
    d = (adc_t >> 4) - cal.dig_T1
    var2 = (((d * d) >> 12) * cal.dig_T3) >> 14
    t_fine = var1 + var2
    return t_fine, (t_fine * 5 + 128) >> 8


def compensate_p(adc_p: int, t_fine: int, cal: Calibration) -> int:
    """Pressure in Pa as Q24.8 (``BME280_compensate_P_int64``); 0 for a zero divisor."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.dig_P6
    var2 += (var1 * cal.dig_P5) << 17
    var2 += cal.dig_P4 << 35
    var1 = ((var1 * var1 * cal.dig_P3) >> 8) + ((var1 * cal.dig_P2) << 12)
    var1 = (((1 << 47) + var1) * cal.dig_P1) >> 33
    if var1 == 0:
        return 0
    p = 1048576 - adc_p
    num = ((p << 31) - var2) * 3125
    p = num // var1 if (num >= 0) == (var1 > 0) else -(-num // var1)  # C truncating division
    var1 = (cal.dig_P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.dig_P8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.dig_P7 << 4)


def compensate_h(adc_h: int, t_fine: int, cal: Calibration) -> int:
    """Relative humidity in %RH as Q22.10 (``bme280_compensate_H_int32``)."""
    v = t_fine - 76800
    v = (((adc_h << 14) - (cal.dig_H4 << 20) - cal.dig_H5 * v + 16384) >> 15) * (
        (
            (((((v * cal.dig_H6) >> 10) * (((v * cal.dig_H3) >> 11) + 32768)) >> 10) + 2097152)
            * cal.dig_H2
            + 8192
        )
        >> 14
    )
    v -= ((((v >> 15) * (v >> 15)) >> 7) * cal.dig_H1) >> 4
    v = min(max(v, 0), 419430400)
    return v >> 12


def t_fine_float(adc_t: int, cal: Calibration) -> int:
    """t_fine as the datasheet's double-precision code computes it (section 8.1).

    Bosch's reference code and Adafruit's library truncate the sum to an integer. The integer
    formula drops the 3 (var1) and 4 (var2) low bits of adc_T, this one does not, so the two
    differ by up to a few units even with those bits clear.
    """
    raw = float(adc_t)
    var1 = (raw / 16384.0 - cal.dig_T1 / 1024.0) * cal.dig_T2
    d = raw / 131072.0 - cal.dig_T1 / 8192.0
    var2 = (d * d) * cal.dig_T3
    return int(var1 + var2)


def compensate_p_float(adc_p: int, t_fine_float: int, cal: Calibration) -> float:
    """Pressure in Pa by the datasheet's double-precision formula (section 8.1); 0.0 for a zero
    divisor. The operations are in the order Adafruit's ``adafruit_bme280`` performs them."""
    var1 = float(t_fine_float) / 2.0 - 64000.0
    var2 = var1 * var1 * cal.dig_P6 / 32768.0
    var2 += var1 * cal.dig_P5 * 2.0
    var2 = var2 / 4.0 + cal.dig_P4 * 65536.0
    var3 = cal.dig_P3 * var1 * var1 / 524288.0
    var1 = (var3 + cal.dig_P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.dig_P1
    if not var1:
        return 0.0
    p = 1048576.0 - adc_p
    p = ((p - var2 / 4096.0) * 6250.0) / var1
    var1 = cal.dig_P9 * p * p / 2147483648.0
    var2 = p * cal.dig_P8 / 32768.0
    return p + (var1 + var2 + cal.dig_P7) / 16.0


def _nearest_increasing(
    f: Callable[[int], int], target: float, lo: int, hi: int, hint: int | None = None
) -> int:
    """The x in [lo, hi] whose f(x) is nearest ``target``, f non-decreasing; bisection.

    A hint (the answer to a similar question) only shortens the search: from it the search
    gallops out to a bracket, and the answer is the one the whole range gives (a bracket that
    ends on a value equal to the target, where a plateau could make them differ, is not used).
    """
    if hint is not None and lo < hint < hi:
        bracket = _gallop(f, target, lo, hi, hint)
        if bracket is not None:
            return _bisect(f, target, *bracket)
    if f(lo) >= target:
        return lo
    f_hi = f(hi)
    if f_hi <= target:
        return hi
    return _bisect(f, target, lo, hi, f_hi)


def _bisect(f: Callable[[int], int], target: float, lo: int, hi: int, f_hi: int) -> int:
    while hi - lo > 1:  # invariant: f(lo) < target <= f(hi)
        mid = (lo + hi) >> 1
        f_mid = f(mid)
        if f_mid < target:
            lo = mid
        else:
            hi, f_hi = mid, f_mid
    return lo if target - f(lo) < f_hi - target else hi


def _gallop(
    f: Callable[[int], int], target: float, lo: int, hi: int, x: int
) -> tuple[int, int, int] | None:
    """(a, b, f(b)) with lo < a < b < hi and f(a) < target < f(b), found by doubling steps
    away from x; None when a step reaches lo or hi or f(b) equals the target."""
    step = 1
    f_x = f(x)
    if f_x < target:
        a = x
        while True:
            b = x + step
            if b >= hi:
                return None
            f_b = f(b)
            if f_b >= target:
                break
            a, step = b, step << 1
    else:
        b, f_b = x, f_x
        while True:
            a = x - step
            if a <= lo:
                return None
            f_a = f(a)
            if f_a < target:
                break
            b, f_b, step = a, f_a, step << 1
    if f_b == target:
        return None
    return a, b, f_b


def _clamp(x: float, bounds: tuple[float, float]) -> float:
    return min(max(float(x), bounds[0]), bounds[1])


# How far the pressure search may move temperature off its nearest value (see below). One t_fine
# step is at most ~15 units (0.003 degC), so the neighbouring adc_T codes stay within this.
T_SLACK_C = 0.0045
_P_SPREAD = 2  # adc_P candidates either side of the integer formula's nearest code
_P_WINDOW = 64  # adc_P bisection window around the first code, for the other adc_T candidates


@lru_cache(maxsize=4096)
def raw_from_environment(
    temperature_c: float, humidity_rh: float, pressure_pa: float, cal: Calibration
) -> tuple[int, int, int]:
    """``(adc_T, adc_P, adc_H)`` that the datasheet compensation turns into the environment.

    The environment is clamped to the sensor's range. Temperature is matched on t_fine (1/5120
    degC) rather than on the 0.01 degC output, so float drivers get the finer value too.

    Pressure is matched for the integer and the floating-point formula at once. One adc_P step
    is 0.14..0.19 Pa and the two formulas differ by up to 0.075 Pa (below 0 degC, mostly because
    the float t_fine is truncated towards zero and the integer one floored), so the code nearest
    for one can be 0.15 Pa off for the other. The search scores each candidate by the larger of
    its two errors, over a few adc_P codes around the integer formula's nearest and over the
    nearest adc_T code and its two neighbours (temperature stays within ``T_SLACK_C``): a t_fine
    step usually shifts the pressure grid by a fraction of an adc_P step, giving codes between.
    Worst case, over the whole range: 0.114 Pa for both formulas.
    Cached: a scenario often holds conditions constant between readings.
    """
    t_target = _clamp(temperature_c, T_RANGE_C) * 5120.0
    hint = _hints.get(cal, (None, None, None))
    adc_t0 = _nearest_increasing(lambda a: compensate_t(a, cal)[0], t_target, 0, 0xFFFFF, hint[0])
    # The integer formula ignores the 3 low bits of adc_T; floating-point drivers do not. With
    # them clear, both compute nearly the same t_fine (within 2 units), and so nearly the same
    # pressure: a t_fine 13 units (0.0025 degC) apart moves the compensated pressure by 0.5 Pa.
    adc_t0 &= ~0x7
    p_pa = _clamp(pressure_pa, P_RANGE_PA)
    slack = T_SLACK_C * 5120.0
    best = (float("inf"), adc_t0, 0, 0)
    seed = -1
    for adc_t in (adc_t0, adc_t0 - 8, adc_t0 + 8):  # nearest first: it wins ties
        if not 0 <= adc_t <= 0xFFFFF:
            continue
        t_fine = compensate_t(adc_t, cal)[0]
        t_fine_f = t_fine_float(adc_t, cal)
        if adc_t != adc_t0 and max(abs(t_fine - t_target), abs(t_fine_f - t_target)) > slack:
            continue
        # Pressure falls as adc_P rises: search on the negated value.
        lo, hi = (
            (0, 0xFFFFF) if seed < 0 else (max(seed - _P_WINDOW, 0), min(seed + _P_WINDOW, 0xFFFFF))
        )
        adc_p0 = _nearest_increasing(
            lambda a, tf=t_fine: -compensate_p(a, tf, cal),
            -p_pa * 256.0,
            lo,
            hi,
            hint[1] if seed < 0 else None,
        )
        if seed < 0:
            seed = adc_p0
        for adc_p in range(max(adc_p0 - _P_SPREAD, 0), min(adc_p0 + _P_SPREAD, 0xFFFFF) + 1):
            err = max(
                abs(compensate_p(adc_p, t_fine, cal) / 256.0 - p_pa),
                abs(compensate_p_float(adc_p, t_fine_f, cal) - p_pa),
            )
            if err < best[0]:
                best = (err, adc_t, adc_p, t_fine)
    _, adc_t, adc_p, t_fine = best
    h_target = _clamp(humidity_rh, H_RANGE_RH) * 1024.0
    adc_h = _nearest_increasing(
        lambda a: compensate_h(a, t_fine, cal), h_target, 0, 0xFFFF, hint[2]
    )
    _hints[cal] = (adc_t0, seed, adc_h)
    return adc_t, adc_p, adc_h


# The last answers per sensor, where the next search starts (the environment moves little
# between two readings): the answers do not depend on them (_nearest_increasing).
_hints: dict[Calibration, tuple[int | None, int | None, int | None]] = {}


def measurement_time_us(osrs_t: int, osrs_p: int, osrs_h: int) -> int:
    """Typical duration of one conversion (datasheet section 9.1), from the osrs_x codes."""
    t_us = 1000 + 2000 * _OSRS_FACTOR[osrs_t]
    if osrs_p:
        t_us += 2000 * _OSRS_FACTOR[osrs_p] + 500
    if osrs_h:
        t_us += 2000 * _OSRS_FACTOR[osrs_h] + 500
    return t_us


def _constant_environment(_t_us: int) -> tuple[float, float, float]:
    return 20.0, 50.0, 101325.0


class Bme280Model:
    """A BME280 on an emulated I2C bus (the ``I2CDevice`` protocol of ``world_api``).

    Writes follow the chip's protocol (datasheet section 6.2.1): the first byte sets the
    register pointer and further bytes come in (data, register, data, ...) order, that is
    a multi-byte write is a sequence of register/data pairs, not a burst. Reads auto-increment.
    Setting ``present`` back to True after False models the part being plugged in again: it
    powers up with its registers at their reset values.
    """

    def __init__(
        self,
        address: int = 0x76,
        calibration: Calibration = DEFAULT_CALIBRATION,
        environment: Environment = _constant_environment,
    ) -> None:
        self.address = address
        self.calibration = calibration
        self.environment = environment
        self._present = True
        self._regs = bytearray(256)
        low, high = calibration.to_registers()
        self._regs[REG_CALIB_LOW : REG_CALIB_LOW + len(low)] = low
        self._regs[REG_CALIB_HIGH : REG_CALIB_HIGH + len(high)] = high
        self._regs[REG_CHIP_ID] = CHIP_ID
        self._pointer = 0
        self._power_on_reset()

    @property
    def present(self) -> bool:
        return self._present

    @present.setter
    def present(self, value: bool) -> None:
        if value and not self._present:
            self._power_on_reset()
        self._present = bool(value)

    def _power_on_reset(self) -> None:
        regs = self._regs
        regs[REG_CTRL_HUM] = regs[REG_STATUS] = regs[REG_CTRL_MEAS] = regs[REG_CONFIG] = 0
        self._set_data(SKIPPED_20BIT, SKIPPED_20BIT, SKIPPED_16BIT)
        self._osrs_h = 0  # the ctrl_hum value latched by the last ctrl_meas write
        self._nvm_until = 0
        self._conv_start: int | None = None  # forced: start of the running conversion
        self._conv_env: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self._normal_start = 0
        self._normal_latched = -1  # index of the last normal-mode cycle put in the registers

    # -- I2C transactions --------------------------------------------------------------------

    def write(self, data: bytes, t_us: int) -> None:
        self._check_present()
        if not data:
            return  # an address-only probe
        self._update(t_us)
        self._pointer = data[0]
        rest = data[1:]
        for i in range(0, len(rest), 2):
            self._write_register(self._pointer, rest[i], t_us)
            if i + 1 < len(rest):
                self._pointer = rest[i + 1]

    def read(self, n: int, t_us: int) -> bytes:
        self._check_present()
        self._update(t_us)
        p = self._pointer
        out = bytes(self._regs[(p + i) & 0xFF] for i in range(n))
        self._pointer = (p + n) & 0xFF
        return out

    def _check_present(self) -> None:
        # The emulated bus normally NACKs before asking an absent device; raise the same error
        # MicroPython's I2C gives for a NACK in case a caller does not.
        if not self._present:
            raise OSError(errno.ENODEV, "BME280 not on the bus")

    # -- registers ---------------------------------------------------------------------------

    def _write_register(self, reg: int, value: int, t_us: int) -> None:
        regs = self._regs
        if reg == REG_RESET:
            if value == RESET_COMMAND:
                self._power_on_reset()
                self._nvm_until = t_us + NVM_COPY_US
                self._update(t_us)
        elif reg == REG_CTRL_HUM:
            regs[reg] = value & 0x07
        elif reg == REG_CONFIG:
            regs[reg] = value & 0xFD  # bit 1 is reserved
        elif reg == REG_CTRL_MEAS:
            regs[reg] = value
            self._osrs_h = regs[REG_CTRL_HUM]  # ctrl_hum takes effect only now (section 5.4.3)
            mode = value & 0x03
            if mode == MODE_SLEEP:
                self._conv_start = None
            elif mode == MODE_NORMAL:
                self._conv_start = None
                self._normal_start = t_us
                self._normal_latched = -1
            else:  # 01 and 10 are both forced mode
                self._conv_start = t_us
                self._conv_env = self.environment(t_us)
            self._update(t_us)
        # Everything else is read-only: writes are ignored, as on the chip.

    def _settings(self) -> tuple[int, int, int]:
        meas = self._regs[REG_CTRL_MEAS]
        return (meas >> 5) & 0x07, (meas >> 2) & 0x07, self._osrs_h

    def _update(self, t_us: int) -> None:
        """Advance the chip to ``t_us``: finish conversions, refresh the status register."""
        regs = self._regs
        mode = regs[REG_CTRL_MEAS] & 0x03
        measuring = False
        if self._conv_start is not None:
            end = self._conv_start + measurement_time_us(*self._settings())
            if t_us >= end:
                self._latch(self._conv_env)
                self._conv_start = None
                regs[REG_CTRL_MEAS] &= 0xFC  # back to sleep mode
            else:
                measuring = True
        elif mode == MODE_NORMAL:
            t_meas = measurement_time_us(*self._settings())
            period = t_meas + _T_STANDBY_US[regs[REG_CONFIG] >> 5]
            elapsed = t_us - self._normal_start
            if elapsed >= t_meas:
                cycle = (elapsed - t_meas) // period
                if cycle > self._normal_latched:
                    start = self._normal_start + cycle * period
                    self._latch(self.environment(start))
                    self._normal_latched = cycle
            measuring = elapsed % period < t_meas
        status = STATUS_MEASURING if measuring else 0
        if t_us < self._nvm_until:
            status |= STATUS_IM_UPDATE
        regs[REG_STATUS] = status

    def _latch(self, env: tuple[float, float, float]) -> None:
        self._regs[REG_DATA : REG_DATA + 8] = self._result(env)

    def _result(self, env: tuple[float, float, float]) -> bytes:
        """The data registers a conversion of ``env`` leaves, with the current settings."""
        osrs_t, osrs_p, osrs_h = self._settings()
        # The ADCs are converted even when a result is skipped: pressure and humidity need the
        # true t_fine, which the host recomputes from adc_T.
        adc_t, adc_p, adc_h = raw_from_environment(*env, self.calibration)
        return _data_bytes(
            adc_t if osrs_t else SKIPPED_20BIT,
            adc_p if osrs_p else SKIPPED_20BIT,
            adc_h if osrs_h else SKIPPED_16BIT,
        )

    def _set_data(self, adc_t: int, adc_p: int, adc_h: int) -> None:
        self._regs[REG_DATA : REG_DATA + 8] = _data_bytes(adc_t, adc_p, adc_h)

    # -- what the chip will answer, for the emulator's runner ----------------------------------

    def snapshot(self, t_us: int | None = None) -> dict[str, Any] | None:
        """The chip's answers from now on, as long as only reads and writes of ctrl_hum and
        config reach it: None in normal mode (its registers follow the environment). ``t_us``
        is accepted for a part used directly as a world's device (the bench world's, always
        on the bus): the snapshot is the same whenever it is taken, until the next transfer.

        ``regs`` (the 256 registers now), ``pointer``, and, while a forced conversion runs,
        ``end_us`` with the ``data`` registers and the ``ctrl_meas`` value it leaves behind
        (the environment was taken when it started); ``nvm_until_us`` while the NVM copy after
        a soft reset lasts. The status register follows from these and the time. Exactly what
        ``read`` would answer (tests/unit/test_bme280_model.py checks it against the model).
        """
        if not self._present or self._regs[REG_CTRL_MEAS] & 0x03 == MODE_NORMAL:
            return None
        snap: dict[str, Any] = {"regs": bytes(self._regs), "pointer": self._pointer}
        if self._conv_start is not None:
            snap["end_us"] = self._conv_start + measurement_time_us(*self._settings())
            snap["data"] = self._result(self._conv_env)
            snap["ctrl_meas"] = self._regs[REG_CTRL_MEAS] & 0xFC
        snap["nvm_until_us"] = self._nvm_until
        return snap


def _data_bytes(adc_t: int, adc_p: int, adc_h: int) -> bytes:
    return bytes(
        (
            adc_p >> 12,
            (adc_p >> 4) & 0xFF,
            (adc_p & 0x0F) << 4,
            adc_t >> 12,
            (adc_t >> 4) & 0xFF,
            (adc_t & 0x0F) << 4,
            adc_h >> 8,
            adc_h & 0xFF,
        )
    )
