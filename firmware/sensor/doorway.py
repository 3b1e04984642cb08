# Doorway line counter: two beam-break inputs a few centimetres apart, A on the street side,
# B on the inside. A then B is someone going in, B then A someone going out. No identity:
# only beam edges and their timing.
#
# An "episode" runs from the first beam going dark (both clear before) until both beams have
# been clear for the debounce time. At its end the counter decides how many people passed and
# which way:
# - each clean dark interval on a beam is at least one person;
# - people walking close together merge into one longer dark interval, so the dark time is
#   also compared with what one body gives at the walker's speed, measured from the lag between
#   the two beams (body depth / beam spacing, from config);
# - someone who stops in the doorway keeps both beams dark for seconds; that pause is taken
#   out before the comparison, so a stop counts once.
# Edges come from pin IRQs with ticks_us times; no allocation per edge.
from micropython import const

_PERIOD = const(0x40000000)  # ticks_us wraps at 2**30 on MicroPython
_HALF = const(0x20000000)
_MASK = const(0x3FFFFFFF)


def _diff(a, b):
    # ticks_diff(a, b) for ticks_us values: correct within +/- 2**29 us (about 9 minutes).
    return ((a - b + _HALF) & _MASK) - _HALF


class LineCounter:
    def __init__(
        self, body_milli=4000, gap_milli=3000, debounce_us=20000, stop_us=1500000, min_lag_us=40000
    ):
        # body_milli: one body's dark time in units of the beam-to-beam lag, in thousandths
        # (body depth / beam spacing: about 0.35-0.5 m / 0.10 m); gap_milli: the extra dark time
        # a close follower adds, in the same units (0.1-0.5 s behind at walking speed). The
        # defaults (as in config.py) were calibrated on the shipped scenarios' doorway days.
        self.body_milli = body_milli
        self.gap_milli = gap_milli
        self.debounce_us = debounce_us
        self.stop_us = stop_us
        # The shortest beam-to-beam lag one walker makes (10 cm at 2.5 m/s); lags are floored
        # there. A shorter one is two people entering from both sides at once, not a speed:
        # trusting it turned one dark interval into dozens of people (+93 in one plaza
        # episode, issue 13).
        self.min_lag_us = min_lag_us
        self.went_in = 0
        self.went_out = 0
        self.episodes = 0
        self.glitches = 0
        self._dark = [False, False]
        self._since = [0, 0]  # when each beam last changed
        self._active = False
        self._clear_at = 0  # when both beams became clear (episode may end after debounce)
        self._clear = False
        # Per-episode state, per beam, allocated once and reset in place (edges come from IRQs).
        self._n = [0, 0]  # dark intervals per beam
        self._dark_us = [0, 0]  # total dark time per beam
        self._first_t = [0, 0]  # first darkening per beam
        self._seen = [False, False]
        self._est = [0, 0]  # people estimated from each beam's dark intervals
        self._reset_episode()

    def _reset_episode(self):
        for b in (0, 1):
            self._n[b] = 0
            self._dark_us[b] = 0
            self._first_t[b] = 0
            self._seen[b] = False
            self._est[b] = 0
        self._first = -1  # beam that darkened first
        self._last_clear = -1
        self._both_since = 0
        self._both_max = 0

    def edge(self, beam, dark, t):
        """A beam (0 = A, 1 = B) went dark (True) or clear (False) at ticks_us t."""
        if dark == self._dark[beam]:
            return  # a repeated level: nothing changed
        if self._active and self._clear:
            d = _diff(t, self._clear_at)
            if d < 0 or d >= self.debounce_us:  # d < 0: clear for longer than ticks can tell
                self._finish()
            else:
                self._clear = False  # a flicker inside the debounce: the episode goes on
        other = 1 - beam
        if dark:
            if not self._active:
                self._active = True
                self._first = beam
            if self._seen[beam] and _diff(t, self._since[beam]) < self.debounce_us:
                # Clear for less than the debounce: a glitch; the interval continues.
                self.glitches += 1
                self._n[beam] -= 1
                self._dark_us[beam] += _diff(t, self._since[beam])
            if not self._seen[beam]:
                self._seen[beam] = True
                self._first_t[beam] = t
            self._n[beam] += 1
            if self._dark[other]:
                self._both_since = t
        else:
            d = _diff(t, self._since[beam])
            if d < self.debounce_us:
                # Dark for less than the debounce: a spike, not a body.
                self.glitches += 1
                self._n[beam] -= 1
            else:
                self._dark_us[beam] += d
                self._last_clear = beam
                self._est[beam] += self._bodies(d)
            if self._dark[other]:
                both = _diff(t, self._both_since)
                if both > self._both_max:
                    self._both_max = both
            else:
                self._clear = True
                self._clear_at = t
        self._dark[beam] = dark
        self._since[beam] = t

    def _bodies(self, d):
        # How many people one dark interval of d us holds, judged against the walker's lag.
        if d > self.stop_us or not (self._seen[0] and self._seen[1]):
            return 1  # someone stood in the doorway, or only one beam saw anything
        lag = _diff(self._first_t[1], self._first_t[0])
        if lag < 0:
            lag = -lag
        if lag < self.min_lag_us:
            lag = self.min_lag_us
        extra = (d * 1000 - lag * self.body_milli) // lag  # thousandths of a lag
        if extra <= 0:
            return 1
        return 1 + (extra + self.gap_milli // 2) // self.gap_milli

    def busy(self):
        return self._active

    def poll(self, t):
        """Close an episode whose beams have been clear for the debounce time."""
        if self._active and self._clear and _diff(t, self._clear_at) >= self.debounce_us:
            self._finish()

    def _finish(self):
        n_a, n_b = self._n
        if n_a == 0 and n_b == 0:
            self._active = False
            self._clear = False
            self._reset_episode()
            return
        e_a, e_b = self._est
        people = (e_a + e_b + 1) // 2
        if n_a > people:
            people = n_a
        if n_b > people:
            people = n_b
        # Direction: the first beam to darken tells the first walker's way, the last beam to
        # clear the last walker's. Opposite walkers in one episode split the count.
        if self._first == 0 and self._last_clear == 1:
            self.went_in += people
        elif self._first == 1 and self._last_clear == 0:
            self.went_out += people
        elif people == 1:
            # Went halfway and turned back: no crossing.
            people = 0
        else:
            first_way = (people + 1) // 2
            if self._first == 0:
                self.went_in += first_way
                self.went_out += people - first_way
            else:
                self.went_out += first_way
                self.went_in += people - first_way
        self.episodes += 1
        self._active = False
        self._clear = False
        self._reset_episode()

    def take(self):
        """(in, out) since the last take; an episode in progress counts in the next window."""
        r = (self.went_in, self.went_out)
        self.went_in = 0
        self.went_out = 0
        return r


class MotionCounter:
    # PIR: counts rising edges of the sensor's output (retriggerable, so one per burst).
    def __init__(self):
        self.count = 0

    def edge(self, high):
        if high:
            self.count += 1

    def take(self):
        c = self.count
        self.count = 0
        return c
