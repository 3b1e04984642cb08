"""Bosch BME280 temperature, humidity and pressure sensor on I2C, forced mode.

Integer arithmetic only, as in the datasheet (BST-BME280-DS002, section 4.2.3). Pressure uses
the 64-bit formula (resolution 1/256 Pa, rounded to Pa; the 32-bit one resolves only 1 Pa):
its intermediates exceed MicroPython's small ints, so a reading leaves about 1 KB of transient
long ints for the GC. Buffers are allocated once.

    sensor = BME280(machine.I2C(0, scl=..., sda=...))
    t_centi_c, p_pa, h_centi_pct = sensor.read()   # 2134, 101325, 4871
"""

import struct
import time

from micropython import const

_REG_CALIB_TP = const(0x88)  # 26 bytes: dig_T1..dig_P9, reserved, dig_H1
_REG_CHIP_ID = const(0xD0)
_REG_RESET = const(0xE0)
_REG_CALIB_H = const(0xE1)  # 7 bytes: dig_H2..dig_H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)  # 8 bytes: press, temp (20 bit each), hum (16 bit)

_CHIP_ID = const(0x60)
_MODE_FORCED = const(0x01)
_STATUS_MEASURING = const(0x08)
_STATUS_IM_UPDATE = const(0x01)
_WAIT_MS = const(50)  # polling budget once the typical conversion time has passed

# MicroPython's errno values (fixed here: the emulator's errno module numbers differ).
_ENODEV = const(19)
_EIO = const(5)
_ETIMEDOUT = const(110)

_FACTOR = (0, 1, 2, 4, 8, 16)
ADDRESS = const(0x76)


def probe(i2c, address=ADDRESS):
    """Why a BME280 does not work: "chip id" (something answers, not a BME280), "no answer"."""
    try:
        i2c.readfrom_mem(address, _REG_CHIP_ID, 1)
        return "chip id"
    except OSError:
        return "no answer"


class BME280:
    """One BME280 at ``address`` on a ``machine.I2C`` bus.

    ``osrs_t``, ``osrs_p``, ``osrs_h`` are the datasheet's oversampling codes (0 skip, 1..5 for
    x1..x16). Temperature cannot be skipped: the other two need it. A skipped value reads None.
    """

    def __init__(self, i2c, address=ADDRESS, osrs_t=1, osrs_p=1, osrs_h=1):
        if not (1 <= osrs_t <= 5 and 0 <= osrs_p <= 5 and 0 <= osrs_h <= 5):
            raise ValueError("osrs")
        self.i2c = i2c
        self.address = address
        self._osrs_p = osrs_p
        self._osrs_h = osrs_h
        self._hum = bytes((osrs_h,))
        self._meas = bytes(((osrs_t << 5) | (osrs_p << 2) | _MODE_FORCED,))
        # Typical conversion time in ms (datasheet section 9.1), rounded up.
        us = 1000 + 2000 * _FACTOR[osrs_t]
        if osrs_p:
            us += 2000 * _FACTOR[osrs_p] + 500
        if osrs_h:
            us += 2000 * _FACTOR[osrs_h] + 500
        self._conv_ms = (us + 999) // 1000
        self._buf = bytearray(8)
        self._mv = memoryview(self._buf)
        self._status = self._mv[:1]  # made once: slicing a memoryview allocates
        self.reset()

    def reset(self):
        """Probe the chip, soft-reset it and read its calibration (again, after a reconnect)."""
        i2c, addr = self.i2c, self.address
        if i2c.readfrom_mem(addr, _REG_CHIP_ID, 1)[0] != _CHIP_ID:
            raise OSError(_ENODEV)
        i2c.writeto_mem(addr, _REG_RESET, b"\xb6")
        time.sleep_ms(2)  # start-up time; the NVM copy is flagged by im_update
        self._wait(_STATUS_IM_UPDATE)
        cal = bytearray(26)
        i2c.readfrom_mem_into(addr, _REG_CALIB_TP, cal)
        (self._t1, self._t2, self._t3, p1, p2, p3, p4, p5, p6, p7, p8, p9) = struct.unpack_from(
            "<HhhHhhhhhhhh", cal
        )
        self._p = (p1, p2, p3, p4, p5, p6, p7, p8, p9)
        h1 = cal[25]
        h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", i2c.readfrom_mem(addr, _REG_CALIB_H, 7))
        # dig_H4 and dig_H5 are signed 12-bit values sharing the nibbles of 0xE5.
        self._h = (h1, h2, h3, (e4 << 4) | (e5 & 0x0F), (e6 << 4) | (e5 >> 4), h6)
        i2c.writeto_mem(addr, _REG_CONFIG, b"\x00")  # IIR filter off

    def _wait(self, bit):
        mv = self._status
        for _ in range(_WAIT_MS):
            self.i2c.readfrom_mem_into(self.address, _REG_STATUS, mv)
            if not mv[0] & bit:
                return
            time.sleep_ms(1)
        raise OSError(_ETIMEDOUT)

    def read(self):
        """One forced conversion: ``(t_centi_c, p_pa, h_centi_pct)``, ints (or None if skipped)."""
        i2c, addr = self.i2c, self.address
        # ctrl_hum is rewritten every time: it is latched by the ctrl_meas write, and a sensor
        # that lost power has forgotten it, while calibration survives in its NVM.
        i2c.writeto_mem(addr, _REG_CTRL_HUM, self._hum)
        i2c.writeto_mem(addr, _REG_CTRL_MEAS, self._meas)
        time.sleep_ms(self._conv_ms)
        self._wait(_STATUS_MEASURING)
        b = self._buf
        i2c.readfrom_mem_into(addr, _REG_DATA, self._mv)
        adc_p = (b[0] << 12) | (b[1] << 4) | (b[2] >> 4)
        adc_t = (b[3] << 12) | (b[4] << 4) | (b[5] >> 4)
        adc_h = (b[6] << 8) | b[7]

        t1 = self._t1
        var1 = (((adc_t >> 3) - (t1 << 1)) * self._t2) >> 11
        d = (adc_t >> 4) - t1
        t_fine = var1 + ((((d * d) >> 12) * self._t3) >> 14)
        t = (t_fine * 5 + 128) >> 8
        p = self._pressure(adc_p, t_fine) if self._osrs_p else None
        h = self._humidity(adc_h, t_fine) if self._osrs_h else None
        return t, p, h

    def _pressure(self, adc_p, t_fine):
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self._p
        var1 = t_fine - 128000
        var2 = var1 * var1 * p6 + ((var1 * p5) << 17) + (p4 << 35)
        var1 = ((var1 * var1 * p3) >> 8) + ((var1 * p2) << 12)
        var1 = (((1 << 47) + var1) * p1) >> 33
        if var1 <= 0:
            raise OSError(_EIO)  # corrupt calibration; would divide by zero
        # The datasheet's C division truncates; within the sensor's range both operands are
        # positive, where floor division is the same.
        p = ((((1048576 - adc_p) << 31) - var2) * 3125) // var1
        var1 = (p9 * (p >> 13) * (p >> 13)) >> 25
        var2 = (p8 * p) >> 19
        p = ((p + var1 + var2) >> 8) + (p7 << 4)  # Q24.8
        return (p + 128) >> 8

    def _humidity(self, adc_h, t_fine):
        h1, h2, h3, h4, h5, h6 = self._h
        v = t_fine - 76800
        v = (((adc_h << 14) - (h4 << 20) - h5 * v + 16384) >> 15) * (
            ((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14
        )
        v -= ((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4
        v = 0 if v < 0 else (419430400 if v > 419430400 else v)
        return ((v >> 12) * 100 + 512) >> 10  # Q22.10 %RH to 0.01 %RH, rounded
