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
        if not hal.clock_valid():
            self.faults |= self.f_clock
            if hal.ticks_diff(now_ms, self.next_ntp) >= 0:
                self.next_ntp = hal.ticks_add(now_ms, self.ntp_retry_ms)
                self.net.sync_time()
        wake = self._windows()  # first: a sample taken at a boundary belongs to the new window
        for r in self.run:
            r[1].step(now_ms)
        if self.uplink is not None and hal.ticks_diff(now_ms, self.next_pump) >= 0:
            self._pump()
        return self._sleep_ms(wake)

    def _sleep_ms(self, window_wake_s):
        now = hal.ticks_ms()
        ms = 3600000
        for r in self.run:
            d = r[1].due_ms(now)
            if d is not None and d < ms:
                ms = d
        if window_wake_s is not None:
            # Wake just after the boundary: epoch() has whole seconds only.
            ms = min(ms, window_wake_s * 1000 - hal.epoch_ms() % 1000 + 5)
        if self.uplink is not None and self.uplink.depth:
            ms = min(ms, hal.ticks_diff(self.next_pump, now))
        if not hal.clock_valid():
            ms = min(ms, hal.ticks_diff(self.next_ntp, now))
        if self.wdt_ms:
            ms = min(ms, self.wdt_ms // 2)  # the watchdog runs on while we sleep
        return ms if ms > 0 else 0

    # ---- windows ---------------------------------------------------------------------------
    def _windows(self):
        """Close every window that has ended; return seconds until the next one ends."""
        if not hal.clock_valid():
            return None
        self.faults &= ~self.f_clock
        now = hal.epoch()
        wake = None
        for r in self.run:
            length = r[3]
            start = r[2]
            if start < 0:
                self._open(r, window.window_start(now, length), now)
            elif now >= start + length:
                self._close(r, start, length)
                self._open(r, window.window_start(now, length), now)
            left = r[2] + length - now
            if wake is None or left < wake:
                wake = left
        return wake

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
