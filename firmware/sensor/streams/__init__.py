# Streams: one module per stream, sensor/streams/<name>.py, each with a class Stream
# (docs/architecture.md, "Add a sensor"). Ctx is what the scheduler gives a stream; Base gives
# the methods a stream may leave out.


class Base:
    def open(self, start, now):
        pass

    def due_ms(self, now_ms):
        return None

    def step(self, now_ms):
        pass


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
