"""Plantower PMS5003 particulate sensor on a UART (9600 8N1), passive mode, duty-cycled.

Frames (data manual V2.5, "Transport Protocol"): 0x42 0x4D, frame length 28 (2 bytes, big
endian), 13 data words (big endian), check code = 16-bit sum of the 30 bytes before it. Data
words 4-6 are PM1.0, PM2.5 and PM10 under "atmospheric environment" in ug/m3: the ones used.
Commands: 0x42 0x4D CMD DATAH DATAL LRCH LRCL, LRC the sum of the five bytes before; 0xE1
mode (0 passive, 1 active), 0xE2 read in passive mode, 0xE4 sleep (0) or wake (1). After a
wake the fan needs 30 s before data is stable (the manual's note), so readings before that
are not used.

    pm = Pms5003(board.uart("pm", 9600, 0))
    cycle = AirCycle(pm, every_ms=300000)
    reading, wait_ms = cycle.step(ticks_ms())   # (pm1, pm2_5, pm10) ug/m3 or None
"""

from micropython import const

_FRAME = const(32)
_LEN = const(28)
_MODE = const(0xE1)
_READ = const(0xE2)
_SLEEP = const(0xE4)
_TIMEOUT_MS = const(100)  # a 32-byte frame takes 33 ms at 9600 baud; the sensor answers in <10


def command(cmd, data):
    """The 7 bytes of a command with its checksum."""
    s = 0x42 + 0x4D + cmd + (data >> 8) + (data & 0xFF)
    return bytes((0x42, 0x4D, cmd, data >> 8, data & 0xFF, s >> 8, s & 0xFF))


def parse(buf, n):
    """Find a frame in buf[0:n]: (start, ok) of the first frame header with its 32 bytes
    present, ok False for a bad length or checksum; (-1, False) when none is complete."""
    i = 0
    while i + _FRAME <= n:
        if buf[i] == 0x42 and buf[i + 1] == 0x4D:
            if (buf[i + 2] << 8 | buf[i + 3]) != _LEN:
                return i, False
            s = 0
            for k in range(i, i + 30):
                s += buf[k]
            return i, s == (buf[i + 30] << 8 | buf[i + 31])
        i += 1
    return -1, False


def values(buf, i):
    """(pm1, pm2_5, pm10) in ug/m3, atmospheric environment: data words 4, 5, 6."""
    return (
        buf[i + 10] << 8 | buf[i + 11],
        buf[i + 12] << 8 | buf[i + 13],
        buf[i + 14] << 8 | buf[i + 15],
    )


class Pms5003:
    """The sensor in passive mode: it answers a read command with one frame."""

    def __init__(self, uart, set_pin=None):
        self.uart = uart
        self.set_pin = set_pin  # held high (SET low would sleep it too; the command suffices)
        self.buf = bytearray(_FRAME)
        self.checksum_errors = 0
        self.missing = 0

    def _send(self, cmd, data):
        self.uart.write(command(cmd, data))

    def _drain(self):
        # Drop what is pending (acknowledgements, a late frame) so a read sees only its answer.
        mv = memoryview(self.buf)
        k = self.uart.any()
        while k:
            self.uart.readinto(mv[: k if k < _FRAME else _FRAME])  # only what is there: no wait
            k = self.uart.any()

    def setup(self):
        """Passive mode, then asleep. Raises OSError(ENODEV) when nothing answers (about 1 s)."""
        if self.set_pin is not None:
            self.set_pin.value(1)
        self.wake()
        self._send(_MODE, 0)
        # Up to about a second (10 reads of at most 100 ms): a sensor just woken may take a
        # moment, a noisy line may spoil a frame; nothing at all means no sensor.
        for _ in range(10):
            if self.read() is not None:
                break
        else:
            if self.checksum_errors == 0:
                raise OSError(19)
        self.checksum_errors = self.missing = 0  # count faults from here on
        self.sleep()

    def wake(self):
        self._send(_SLEEP, 1)

    def sleep(self):
        self._send(_SLEEP, 0)

    def read(self):
        """Ask for one frame: (pm1, pm2_5, pm10) in ug/m3, or None (counted: a checksum error,
        or a missing frame when no valid frame arrives within the timeout)."""
        self._drain()
        self._send(_READ, 0)
        buf = self.buf
        mv = memoryview(buf)
        n = 0
        bad = False
        budget = 4 * _FRAME
        while True:
            i, ok = parse(buf, n)
            if i >= 0 and ok:
                return values(buf, i)
            if i >= 0:  # a corrupt frame or an acknowledgement: skip its header, look again
                bad = bad or (buf[i + 2] << 8 | buf[i + 3]) == _LEN
                i += 2
            else:  # keep only what may be the start of a frame
                i = n - _FRAME + 1 if n >= _FRAME else 0
                while i < n and buf[i] != 0x42:
                    i += 1
            if i:
                buf[0 : n - i] = buf[i:n]
                n -= i
                if n >= _FRAME:
                    continue
            if budget <= 0:
                break  # a stream of garbage (a wrong baud rate): give up for this reading
            got = self.uart.readinto(mv[n:_FRAME])  # waits up to the UART's timeout
            if not got:
                break
            n += got
            budget -= got
        if bad:
            self.checksum_errors += 1
        else:
            self.missing += 1
        return None

    @property
    def faults(self):
        return self.checksum_errors + self.missing


_ASLEEP = const(0)
_WARMING = const(1)
_PERIOD = const(0x40000000)  # ticks_ms wraps at 2**30 on MicroPython
_HALF = const(0x20000000)


def _diff(a, b):
    # time.ticks_diff(a, b) without importing time (the caller passes hal.ticks_ms()).
    return ((a - b + _HALF) & (_PERIOD - 1)) - _HALF



class AirCycle:
    """Duty cycling: wake every ``every_ms``, wait ``warmup_ms`` for the fan, take ``reads``
    readings ``gap_ms`` apart, sleep again. step(now_ms) returns (reading or None, ms until
    the next step is due)."""

    def __init__(self, pms, every_ms=300000, warmup_ms=30000, reads=3, gap_ms=2000):
        self.pms = pms
        self.every = every_ms
        self.warmup = warmup_ms
        self.reads = reads
        self.gap = gap_ms
        self.state = _ASLEEP
        self.due = None  # ticks_ms of the next action; None: at once
        self.woke = 0
        self.left = 0

    def step(self, now):
        if self.due is not None and _diff(self.due, now) > 0:
            return None, _diff(self.due, now)
        if self.state == _ASLEEP:
            self.pms.wake()
            self.state = _WARMING
            self.woke = now
            self.left = self.reads
            self.due = (now + self.warmup) % _PERIOD
            return None, self.warmup
        r = self.pms.read()
        self.left -= 1
        if self.left > 0:
            self.due = (now + self.gap) % _PERIOD
            return r, self.gap
        self.pms.sleep()
        self.state = _ASLEEP
        nxt = self.every - _diff(now, self.woke)
        nxt = nxt if nxt > 0 else 0
        self.due = (now + nxt) % _PERIOD
        return r, nxt


class AirWindow:
    """One window of readings: means and maxima in 0.1 ug/m3, in constant memory."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.n = 0
        self.s1 = self.s25 = self.s10 = 0
        self.m25 = self.m10 = 0

    def add(self, r):
        pm1, pm25, pm10 = r
        self.n += 1
        self.s1 += pm1
        self.s25 += pm25
        self.s10 += pm10
        if pm25 > self.m25:
            self.m25 = pm25
        if pm10 > self.m10:
            self.m10 = pm10

    def close(self):
        """The window's values (0.1 ug/m3), or None when nothing was read; then reset."""
        n = self.n
        if n == 0:
            return None
        out = {
            "pm1_mean": (self.s1 * 20 + n) // (2 * n),  # x10, rounded half up
            "pm2_5_mean": (self.s25 * 20 + n) // (2 * n),
            "pm10_mean": (self.s10 * 20 + n) // (2 * n),
            "pm2_5_max": self.m25 * 10,
            "pm10_max": self.m10 * 10,
            "samples": n,
        }
        self.reset()
        return out
