# The sensor's main loop: a small scheduler on the board clock.
#
# Reading from sensor to uplink, the modules in order: hal (board layer) -> drivers (bme280,
# doorway, presence...) -> streams (sensor/streams/<name>.py: sampling and the window's
# aggregates) -> gate (privacy gate, policy) -> sealer/uplink (COSE, counter, outbox,
# transport). This file runs the streams the catalogue lists (sensor/catalogue.py), the config
# enables and the policy allows, in the catalogue's order; it knows none of them by name.
#
# Two modes:
# - provisioned (/identity.json or /policy.json present): each closed window goes through the
#   privacy gate; the records it releases are sealed into the outbox, and the console shows
#   exactly those records, nothing more. A policy (or identity) that does not load fails
#   closed: no people stream runs, health only, one console line with the reason;
# - bench (never provisioned): nothing leaves the device; the console shows the raw window
#   aggregates (counts, never identifiers) for the engineer at the bench and for tests.
import gc

from sensor import forget, hal, window
from sensor.catalogue import K_COUNT, K_EPSILON, K_LENGTH, K_POLICY, K_START, K_STATUS, K_STREAM

_PUMP_MS = 30000  # retry delivery this often while frames wait in the outbox


def _stamp(t):
    y, mo, d, h, mi, s = hal.gmtime(t)[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)


class App:
    def __init__(self):
        # Boot-time wiring lives in sensor/start.py, dropped from RAM once it has run
        # together with the config, identity, policy, catalogue and transport modules (the
        # transport made keeps what it needs).
        self.board = hal.Board()
        self.cause = hal.reset_cause()
        self.boot_ms = hal.ticks_ms()
        self.boots = hal.count_boot()
        self.faults = 0
        self.errors = 0
        self.rng = None  # set by start.build first: streams draw from it as they are made
        self.next_ntp = hal.ticks_ms()
        self.next_pump = hal.ticks_ms()
        self.clock_ok = False  # the RTC has been set (it is not read again until a window ends)
        self.next_end = None  # tick deadline: the earliest end of a window
        from sensor import start

        (self.wdt, self.wdt_ms, self.ntp_retry_ms, self.f_clock, self.ident, self.rng,
         self.gate, self.uplink, self.net, self.rnames, self.snames, self.run) = start.build(self)
        _drop("start", "config", "identity", "policy", "catalogue", "transport")

    # ---- the loop ------------------------------------------------------------------------
    def step(self):
        """One pass of the main loop; returns how long to sleep (ms) before the next one."""
        now_ms = hal.ticks_ms()
        if self.wdt is not None:
            self.wdt.feed()  # only a loop that gets here is healthy
        if not self._clock():
            self.faults |= self.f_clock
            if hal.ticks_diff(now_ms, self.next_ntp) >= 0:
                self.next_ntp = hal.ticks_add(now_ms, self.ntp_retry_ms)
                self.net.sync_time()
        self._windows()  # first: a sample taken at a boundary belongs to the new window
        for r in self.run:
            r[1].step(now_ms)
        if self.uplink is not None and hal.ticks_diff(now_ms, self.next_pump) >= 0:
            self._pump()
        return self._sleep_ms()

    def _sleep_ms(self):
        now = hal.ticks_ms()
        ms = 3600000
        for r in self.run:
            d = r[1].due_ms(now)
            if d is not None and d < ms:
                ms = d
        if self.next_end is not None:
            # Wake just after the boundary (RTC and tick timer may differ by a ms about it).
            ms = min(ms, hal.ticks_diff(self.next_end, now) + 5)
        if self.uplink is not None and self.uplink.depth:
            ms = min(ms, hal.ticks_diff(self.next_pump, now))
        if not self.clock_ok:
            ms = min(ms, hal.ticks_diff(self.next_ntp, now))
        if self.wdt_ms:
            ms = min(ms, self.wdt_ms // 2)  # the watchdog runs on while we sleep
        return ms if ms > 0 else 0

    # ---- windows ---------------------------------------------------------------------------
    # The RTC is read only when a window may have ended (the end is kept as a tick deadline,
    # r[4]) or has just been set. Unix seconds are past 2**30, so each read makes a big int on
    # the heap, and most passes end nothing: a pico-w wakes every 4 s to feed its watchdog,
    # and such a pass allocates nothing at all.
    def _clock(self):
        """True once the RTC has been set (NTP); until then it is checked at every pass."""
        if self.clock_ok:
            return True
        if not hal.clock_valid():
            return False
        self.clock_ok = True
        now = hal.ticks_ms()
        for r in self.run:
            r[4] = now  # read the RTC at once: open the windows
        return True

    def _windows(self):
        """Close every window that has ended, open the next; keep the earliest end."""
        if not self._clock():
            return
        self.faults &= ~self.f_clock
        now_t = hal.ticks_ms()
        now = None
        first = None
        for r in self.run:
            if hal.ticks_diff(now_t, r[4]) >= 0:
                if now is None:
                    now = hal.epoch()
                length = r[3]
                start = r[2]
                if start < 0:
                    self._open(r, window.window_start(now, length), now)
                elif now >= start + length:
                    self._close(r, start, length)
                    self._open(r, window.window_start(now, length), now)
                # The end as a tick deadline (if the tick timer ran ahead of the RTC, this
                # window is still open and its end comes again a little later).
                r[4] = hal.ticks_add(hal.ticks_ms(), (r[2] + length) * 1000 - hal.epoch_ms())
            if first is None or hal.ticks_diff(r[4], first) < 0:
                first = r[4]
        if first is not None:
            self.next_end = first

    def _open(self, r, start, now):
        r[2] = start
        r[1].open(start, now)

    def _close(self, r, start, length):
        values = r[1].close(start, length)
        if self.gate is None:  # bench mode: what the window measured, nothing leaves
            from sensor import bench

            print("win %s %s %s" % (_stamp(start), r[0], bench.line(r[0], r[1], values)))
            return
        for rec in self.gate.release(r[0], start, length, values):
            self._emit(rec)

    def _emit(self, record):
        print("rel " + self._describe(record))
        if self.uplink is not None:
            from sensor import cbor

            try:
                self.uplink.submit(cbor.dumps(record))
            except Exception as e:  # a full flash or a broken outbox must not stop sensing
                self.errors += 1
                print("uplink: submit failed: %s" % (e.args[0] if e.args else type(e).__name__))
            self.next_pump = hal.ticks_ms()

    def _describe(self, r):
        # One console line for a released record: what leaves the device, nothing else.
        s = "%s %s/%d" % (self.rnames.get(r[K_STREAM], "?"), _stamp(r[K_START]), r[K_LENGTH])
        if K_STATUS in r:
            return s + " " + self.snames.get(r[K_STATUS], "?")
        if K_COUNT in r:
            return s + " value=%d" % r[K_COUNT]
        keys = sorted(k for k in r if k not in (K_START, K_LENGTH, K_POLICY, K_STREAM, K_EPSILON))
        for k in keys:
            s += " %d=%d" % (k, r[k])
        return s

    def _pump(self):
        up = self.uplink
        if up is None:
            return
        try:
            up.pump(2000)
        except Exception as e:
            self.errors += 1
            print("uplink: %s" % (e.args[0] if e.args else type(e).__name__))
        self.next_pump = hal.ticks_add(hal.ticks_ms(), _PUMP_MS)


def _drop(*names):
    forget(*names)  # modules needed only at boot
    gc.collect()


def setup():
    return App()


def run():
    # The main loop. An emulated board may drive setup()/step() itself (same behaviour), to
    # measure the live heap between steps.
    app = setup()
    while True:
        hal.idle(app.step())
