# Streams: one module per stream, sensor/streams/<name>.py, each with a class Stream
# (docs/architecture.md, "Add a sensor"). Ctx is what the scheduler gives a stream; Base gives
# the methods a stream may leave out; Periodic, the timing of a stream that samples on a period.
from sensor import hal


class Base:
    def open(self, start, now):
        pass

    def due_ms(self, now_ms):
        return None

    def step(self, now_ms):
        pass


class Periodic(Base):
    """A stream that samples every self.period ms, mid-period on the wall clock (at :15 and
    :45 for 30 s), never on a window boundary, where RTC and tick timer may disagree by a few
    ms about which side: every period / window blocks in each full window."""

    def _every(self, period_ms):
        # From the stream's __init__: the period, and a first sample at once.
        self.period = period_ms
        self.next = hal.ticks_ms()

    def _align(self):
        per = self.period
        phase = (hal.epoch_ms() - per // 2) % per
        self.next = hal.ticks_add(hal.ticks_ms(), (per - phase) % per)

    def due_ms(self, now_ms):
        return hal.ticks_diff(self.next, now_ms)

    def _due(self, now_ms):
        # True when a sample is due now (and the next one is set).
        if hal.ticks_diff(now_ms, self.next) < 0:
            return False
        self.next = hal.ticks_add(self.next, self.period)
        if hal.ticks_diff(now_ms, self.next) >= 0:  # fell behind (slept long): catch up
            self.next = hal.ticks_add(now_ms, self.period)
        return True


class Ctx:
    """What a stream gets from the scheduler (docs/architecture.md, "Add a sensor").

    cfg and policy are there for the stream's __init__ only: the scheduler forgets them once
    the stream is made, so what the stream keeps is all that stays in RAM.
    """

    def __init__(self, app, cfg, policy, bits):
        self.app = app
        self.board = app.board
        self.rng = app.rng
        self.cfg = cfg  # the stream's config section, defaults applied ({} if it has none)
        self.policy = policy  # the stream's policy fields; None in bench mode
        self._bits = bits  # the stream's fault bits (masks), in the catalogue's order

    def fault(self, i, on=None):
        """Set (on True) or clear (False) the stream's fault i; True if it was set before."""
        a = self.app
        m = self._bits[i]
        was = bool(a.faults & m)
        if on:
            a.faults |= m
        elif on is not None:
            a.faults &= ~m
        return was

    def error(self, n=1):
        """Count n errors (sensor read failures...) for the health record."""
        self.app.errors += n
