# time, on the virtual clock. Conversions (gmtime, mktime, ticks arithmetic) are the VM's own.
import time as _t

import _board as _b

ticks_add = _t.ticks_add
ticks_diff = _t.ticks_diff
mktime = _t.mktime
_MASK = 0x3FFFFFFF
# Where the RTC stood at boot (epoch seconds); machine.RTC and ntptime move it.
rtc_base_s = 0
rtc_base_us = 0


def ticks_ms():
    _b.cost()
    return _b.ms & _MASK


def ticks_us():
    _b.cost()
    return _b.tus


def ticks_cpu():
    return ticks_us()


def sleep_ms(n):
    _b.sleep_us(int(n) * 1000)


def sleep_us(n):
    _b.sleep_us(int(n))


def sleep(s):
    _b.sleep_us(int(s * 1000000))


def _rtc_us():
    return (rtc_base_s * 1000 + _b.ms) * 1000 + rtc_base_us + _b.us


def time():
    _b.cost()
    return _rtc_us() // 1000000


def time_ns():
    _b.cost()
    return _rtc_us() * 1000


def gmtime(secs=None):
    return _t.gmtime(time() if secs is None else secs)


def localtime(secs=None):
    # Boards keep UTC in the RTC; localtime equals gmtime there too.
    return _t.gmtime(time() if secs is None else secs)


def set_rtc(epoch_us):
    # Make the RTC read epoch_us now.
    global rtc_base_s, rtc_base_us
    since_boot = _b.ms * 1000 + _b.us
    base = epoch_us - since_boot
    rtc_base_s = base // 1000000
    rtc_base_us = base % 1000000
