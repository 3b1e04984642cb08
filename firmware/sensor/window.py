# Fixed windows aligned to the wall clock, and the environmental aggregator that keeps count,
# sum, min and max of integer readings in constant memory.
from micropython import const

_BIG = const(0x3FFFFFFF)


def window_start(t, length):
    return t - t % length


class Stats:
    # One quantity: count, sum, min, max of scaled integers (0.01 degC, 0.01 %RH, Pa).
    def __init__(self):
        self.reset()

    def reset(self):
        self.n = 0
        self.total = 0
        self.lo = _BIG
        self.hi = -_BIG

    def add(self, v):
        self.n += 1
        self.total += v
        if v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v

    def mean(self):
        # Rounded half away from zero, in integers.
        n = self.n
        t = self.total
        if t >= 0:
            return (2 * t + n) // (2 * n)
        return -((-2 * t + n) // (2 * n))


class EnvWindow:
    def __init__(self):
        self.t = Stats()
        self.h = Stats()
        self.p = Stats()
        self.errors = 0

    def add(self, t, p, h):
        self.t.add(t)
        self.p.add(p)
        self.h.add(h)

    def reset(self):
        self.t.reset()
        self.h.reset()
        self.p.reset()
        self.errors = 0
