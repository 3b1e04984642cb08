# The environment stream: a BME280 read every sample_s seconds, range and stuck checks, and
# per window the count, mean, min and max of temperature (0.01 degC), humidity (0.01 %RH)
# and pressure (Pa) in constant memory (sensor/window.py). Faults, in the catalogue's order:
# missing, chip id, out of range, stuck.
from micropython import const

from sensor import window
from sensor.bme280 import BME280, probe
from sensor.streams import Periodic

_MISSING = const(0)
_CHIP = const(1)
_RANGE = const(2)
_STUCK = const(3)

# Identical readings in a row before the sensor counts as stuck: an hour at the default rate
# (a live BME280's last bits always move; a frozen one repeats itself exactly).
_STUCK_SAMPLES = const(120)


class Stream(Periodic):
    ID = "env"

    def __init__(self, ctx):
        self.ctx = ctx
        try:
            self.i2c = ctx.board.i2c()
        except (OSError, ValueError) as e:
            raise ValueError("no I2C bus: %s" % e)
        self._every(ctx.cfg["sample_s"] * 1000)
        self.osrs = ctx.cfg["osrs"]
        self.w = window.EnvWindow()
        self.dev = None
        self.last = [0, 0, -1]
        self.same = 0
        self.first = 0  # when the window opened (epoch s): samples before it were not due
        self.err = 0  # errors of the window last closed

    def open(self, start, now):
        self.w.reset()
        self.first = now
        self._align()

    def step(self, now_ms):
        if self._due(now_ms):
            self._sample()

    def _expected(self, start, length):
        # Sample instants are start + per/2 + k * per; count those at or after the first.
        per = self.period
        off = (self.first - start) * 1000 - per // 2
        skipped = (off + per - 1) // per if off > 0 else 0
        n = length * 1000 // per - skipped
        return n if n > 0 else 0

    def close(self, start, length):
        # In the catalogue's order: mean t h p, min t h p, max t h p, samples, samples lost.
        w = self.w
        self.err = w.errors
        self.ctx.error(w.errors)
        n = w.t.n
        exp = self._expected(start, length)
        lost = exp - n if exp > n else 0
        if not n:
            return (None, None, None, None, None, None, None, None, None, 0, lost)
        t, h, p = w.t, w.h, w.p
        return (t.mean(), h.mean(), p.mean(), t.lo, h.lo, p.lo, t.hi, h.hi, p.hi, n, lost)


    def _sample(self):
        w = self.w
        ctx = self.ctx
        try:
            if self.dev is None:
                o = self.osrs
                self.dev = BME280(self.i2c, osrs_t=o, osrs_p=o, osrs_h=o)
                if ctx.fault(_MISSING, False) | ctx.fault(_CHIP, False):
                    print("env: sensor back")
            t, p, h = self.dev.read()
        except OSError:
            self.dev = None
            w.errors += 1
            # Tell a missing sensor (no answer) from a wrong chip (answers, wrong id).
            why = probe(self.i2c)
            chip = why == "chip id"
            was = ctx.fault(_CHIP, chip) | ctx.fault(_MISSING, not chip)
            if not was:
                print("env: sensor fault (%s)" % why)
            return
        if p is None or h is None:
            return  # not measured (oversampling 0): config allows 1..5 only
        if not (-4000 <= t <= 8500 and 0 <= h <= 10000 and 30000 <= p <= 110000):
            w.errors += 1
            if not ctx.fault(_RANGE, True):
                print("env: reading out of range")
            return
        ctx.fault(_RANGE, False)
        last = self.last
        if last[0] == t and last[1] == h and last[2] == p:
            self.same += 1
            if self.same >= _STUCK_SAMPLES:
                if not ctx.fault(_STUCK, True):
                    print("env: sensor stuck")
                w.errors += 1
                return
        else:
            self.same = 0
            ctx.fault(_STUCK, False)
        last[0] = t
        last[1] = h
        last[2] = p
        w.add(t, p, h)
