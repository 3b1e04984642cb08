# time, on the virtual clock. Conversions (ticks arithmetic, the calendar) are the VM's own.
#
# The port's epoch: MicroPython counts from 2000-01-01 unless a port sets MICROPY_EPOCH_IS_1970
# (shared/timeutils/timeutils.h). The esp32 port keeps 2000 (its time(), time_ns(), gmtime()
# and mktime() all count from 2000: ports/esp32/modtime.c, mphalport.c mp_hal_time_ns); the
# rp2 port sets 1970 (ports/rp2/mpconfigport.h). This VM counts from 1970, so the board's
# epoch offset (from the board definition) is applied here. Internally the RTC is kept in Unix
# microseconds, as the host knows it.
import time as _t

import _board as _b

ticks_add = _t.ticks_add
ticks_diff = _t.ticks_diff
_MASK = 0x3FFFFFFF
# Where the RTC stood at boot (Unix seconds and microseconds); machine.RTC and ntptime move it.
rtc_base_s = 0
rtc_base_us = 0
_off = 0  # seconds from 1970-01-01 to the port's epoch (946684800 for a 2000 epoch)
_base_s = 0  # rtc_base_s in the port's epoch


def ticks_ms():
    _b.cost()
    return _b.ms & _MASK


def ticks_us():
    _b.cost()
    return _b.tus


def ticks_cpu():
    return ticks_us()


def sleep_ms(n):
    _b.sleep_ms(int(n))


def sleep_us(n):
    _b.sleep_us(int(n))


def sleep(s):
    _b.sleep_us(int(s * 1000000))


def _rtc_us():
    # Unix microseconds now.
    return (rtc_base_s * 1000 + _b.ms) * 1000 + rtc_base_us + _b.us


def time():
    _b.cost()
    # As the ports compute it: seconds since the port's epoch, a small int while it fits (on an
    # esp32 until 2034; on an rp2, counting from 1970, never: a big int on the heap, as there).
    # Worked out in small ints so that nothing else is allocated: a port allocates nothing
    # more (ports/esp32/modtime.c, ports/rp2/modtime.c mp_time_time_get).
    return _base_s + ((rtc_base_us + _b.us) // 1000 + _b.ms) // 1000


def time_ns():
    _b.cost()
    return (_rtc_us() - _off * 1000000) * 1000


def gmtime(secs=None):
    return _t.gmtime((time() if secs is None else secs) + _off)


# Boards keep UTC in the RTC; localtime equals gmtime there too.
localtime = gmtime


def mktime(tm):
    return _t.mktime(tm) - _off


def unix_gmtime(secs):
    return _t.gmtime(secs)


def unix_mktime(tm):
    return _t.mktime(tm)


def set_rtc(epoch_us):
    # Make the RTC read epoch_us (Unix microseconds) now.
    global rtc_base_s, rtc_base_us, _base_s
    since_boot = _b.ms * 1000 + _b.us
    base = epoch_us - since_boot
    rtc_base_s = base // 1000000
    rtc_base_us = base % 1000000
    _base_s = rtc_base_s - _off


def set_epoch(year):
    global _off, _base_s
    _off = 946684800 if year == 2000 else 0
    _base_s = rtc_base_s - _off
