# The sensor's main loop: a small scheduler on the board clock.
#
# Reading from sensor to uplink, the modules in order: hal (board layer) -> bme280, doorway,
# presence (drivers and the identifier path) -> window (aggregators) -> gate (privacy gate,
# policy) -> sealer/uplink (COSE, counter, outbox, transport). This file only wires them.
#
# Two modes:
# - provisioned (/identity.json or /policy.json present): each closed window goes through the
#   privacy gate; the records it releases are sealed into the outbox, and the console shows
#   exactly those records, nothing more. A policy (or identity) that does not load fails
#   closed: no people stream runs, health only, one console line with the reason;
# - bench (never provisioned): nothing leaves the device; the console shows the raw window
#   aggregates (counts, never identifiers) for the engineer at the bench and for tests.
import gc
import os
import sys

from sensor import hal, window
from sensor.bme280 import BME280
from sensor.doorway import LineCounter, MotionCounter
from sensor.presence import Presence
from sensor.rng import Rng

_CAUSE_CODES = {"power": 0, "watchdog": 1, "reset": 2, "deepsleep": 3}

F_ENV_MISSING = 1
F_ENV_CHIP = 2
F_ENV_RANGE = 4
F_ENV_STUCK = 8
F_BLE_OFF = 16
F_CLOCK = 32
F_POLICY = 64

# Identical readings in a row before the sensor counts as stuck: an hour at the default rate
# (a live BME280's last bits always move; a frozen one repeats itself exactly).
_STUCK_SAMPLES = 120
_PUMP_MS = 30000  # retry delivery this often while frames wait in the outbox
_BENCH_WINDOW_S = 900

# The bench-mode policy: windows only, nothing is released (no identity, no uplink).
_BENCH_STREAMS = ("env", "doorway", "motion", "ble", "health")
_ORDER = _BENCH_STREAMS  # health last: it reports the errors the other streams counted


def _fmt_centi(v):
    s = "-" if v < 0 else ""
    v = abs(v)
    return "%s%d.%02d" % (s, v // 100, v % 100)


def _stamp(t):
    y, mo, d, h, mi, s = hal.gmtime(t)[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)


class App:
    def __init__(self):
        self.board = hal.Board()
        self.cause = hal.reset_cause()
        self.boot_ms = hal.ticks_ms()
        self.boots = hal.count_boot()
        print("atsource: %s boot %d (%s)" % (self.board.name, self.boots, self.cause))
        self.cfg = _load_config()
        wd = self.cfg["watchdog_ms"]
        self.wdt = None
        self.wdt_ms = 0
        if wd:
            self.wdt, self.wdt_ms = self.board.watchdog(wd)
        self.faults = 0
        self.errors = 0
        self.ident, damaged = _load_identity()
        pol = _load_policy(self.ident is not None, damaged)
        if pol is not None and (pol.closed or pol.refused):
            self.faults |= F_POLICY
        seed = self.ident.seed if self.ident is not None else hal.urandom(32)
        self.rng = Rng(seed)
        self.gate = None
        self.uplink = None
        if pol is not None:
            from sensor import gate

            self.gate = gate.Gate(pol, self.rng, gate.Ledger())
            if self.ident is not None:
                self.uplink = self._make_uplink()
        pol = None
        # Modules needed only at boot are dropped: code loaded from flash lives in RAM.
        _drop("config", "identity", "policy")
        self.net = hal.Net(self.cfg["wifi"])
        self.next_ntp = hal.ticks_ms()
        self.next_pump = hal.ticks_ms()
        self.ntp_retry_ms = self.cfg["ntp_retry_s"] * 1000
        self.duty = self.cfg["ble"]["duty_pct"]
        self._setup_streams()
        self.cfg = None  # the rest of the configuration is not needed after boot
        _drop("config")

    def _make_uplink(self):
        try:
            from sensor import uplink
        except ImportError:
            print("uplink: not installed: records are sealed nowhere")
            return None
        try:
            return uplink.Uplink(self.ident, self.cfg)
        except Exception as e:  # a broken transport config must not stop sensing
            print("uplink: %s" % (e.args[0] if e.args else type(e).__name__))
            return None

    # ---- streams -------------------------------------------------------------------------
    def _enabled(self, name):
        c = self.cfg
        if c is None or not c["sensors"].get("pir" if name == "motion" else name, name == "health"):
            return False
        if self.gate is not None:
            return self.gate.allows(name)
        return name in _BENCH_STREAMS

    def _length(self, name):
        return self.gate.window_s(name, _BENCH_WINDOW_S) if self.gate else _BENCH_WINDOW_S

    def _setup_streams(self):
        self.start = {}  # stream -> current window start (epoch s), -1 until the clock is set
        self.length = {}
        for name in ("env", "doorway", "motion", "ble", "health"):
            if name == "health" or self._enabled(name):
                self.start[name] = -1
                self.length[name] = self._length(name)
        c = self.cfg
        if c is None:
            return
        self.i2c = None
        self.env = None
        self.envw = window.EnvWindow()
        self.env_period = c["env"]["sample_s"] * 1000
        self.osrs = c["env"]["osrs"]
        self.next_env = hal.ticks_ms()
        self.last_raw = [0, 0, -1]
        self.same = 0
        self.env_first = 0
        if "env" in self.start:
            try:
                self.i2c = self.board.i2c()
            except (OSError, ValueError) as e:
                print("env: no I2C bus: %s" % e)
                del self.start["env"]
        self.line = None
        if "doorway" in self.start:
            d = c["doorway"]
            line = LineCounter(d["body_milli"], d["gap_milli"], d["debounce_ms"] * 1000)
            self.line = line

            # Beams read 0 when broken (the receiver sees no light).
            def beam_a(pin):
                line.edge(0, pin.value() == 0, hal.ticks_us())

            def beam_b(pin):
                line.edge(1, pin.value() == 0, hal.ticks_us())

            self.board.input("beam_a").irq(beam_a, hal.IRQ_BOTH)
            self.board.input("beam_b").irq(beam_b, hal.IRQ_BOTH)
        self.motion = None
        if "motion" in self.start:
            motion = MotionCounter()
            self.motion = motion

            def pir(pin):
                motion.edge(True)

            self.board.input("pir").irq(pir, hal.IRQ_RISING)
        self.presence = None
        if "ble" in self.start:
            floor = c["ble"]["rssi_floor"]
            bits = 8192
            if self.gate is not None:
                s = self.gate.streams["ble"]
                floor = s.get("rssi_floor", floor)
                bits = s.get("sketch_bits", bits)
            presence = Presence(self.rng, bits, floor)
            self.presence = presence

            def ble_irq(event, data):
                if event == hal.BLE_SCAN_RESULT:
                    addr_type, addr, _adv_type, rssi, adv = data
                    presence.on_advert(addr_type, addr, rssi, adv)
                elif event == hal.BLE_SCAN_DONE:
                    self.faults |= F_BLE_OFF  # restarted from the loop

            self._ble_irq = ble_irq
            self._start_scan()

    def _start_scan(self):
        try:
            hal.ble_scan(self._ble_irq, self.duty)
            self.faults &= ~F_BLE_OFF
        except OSError as e:
            print("ble: scan failed errno=%d" % e.args[0])
            self.faults |= F_BLE_OFF

    # ---- the loop ------------------------------------------------------------------------
    def step(self):
        """One pass of the main loop; returns how long to sleep (ms) before the next one."""
        now_ms = hal.ticks_ms()
        if self.wdt is not None:
            self.wdt.feed()  # only a loop that gets here is healthy
        if not hal.clock_valid():
            self.faults |= F_CLOCK
            if hal.ticks_diff(now_ms, self.next_ntp) >= 0:
                self.next_ntp = hal.ticks_add(now_ms, self.ntp_retry_ms)
                self.net.sync_time()
        wake = self._windows()  # first: a sample taken at a boundary belongs to the new window
        if self.env_period and "env" in self.start and hal.ticks_diff(now_ms, self.next_env) >= 0:
            self._sample_env()
            self.next_env = hal.ticks_add(self.next_env, self.env_period)
            if hal.ticks_diff(now_ms, self.next_env) >= 0:  # fell behind (slept long): catch up
                self.next_env = hal.ticks_add(now_ms, self.env_period)
        if self.line is not None:
            self.line.poll(hal.ticks_us())
        if self.presence is not None and self.faults & F_BLE_OFF:
            self._start_scan()
        if self.uplink is not None and hal.ticks_diff(now_ms, self.next_pump) >= 0:
            self._pump()
        return self._sleep_ms(wake)

    def _sleep_ms(self, window_wake_s):
        now = hal.ticks_ms()
        ms = 3600000
        if "env" in self.start:
            ms = min(ms, hal.ticks_diff(self.next_env, now))
        if window_wake_s is not None:
            # Wake just after the boundary: epoch() has whole seconds only.
            ms = min(ms, window_wake_s * 1000 - hal.epoch_ms() % 1000 + 5)
        if self.uplink is not None and self.uplink.depth:
            ms = min(ms, hal.ticks_diff(self.next_pump, now))
        if not hal.clock_valid():
            ms = min(ms, hal.ticks_diff(self.next_ntp, now))
        if self.line is not None and self.line.busy():
            ms = min(ms, 100)  # let the line counter close an episode promptly
        if self.wdt_ms:
            ms = min(ms, self.wdt_ms // 2)  # the watchdog runs on while we sleep
        return ms if ms > 0 else 0

    def _sample_env(self):
        w = self.envw
        try:
            if self.env is None:
                o = self.osrs
                self.env = BME280(self.i2c, osrs_t=o, osrs_p=o, osrs_h=o)
                if self.faults & (F_ENV_MISSING | F_ENV_CHIP):
                    print("env: sensor back")
                self.faults &= ~(F_ENV_MISSING | F_ENV_CHIP)
            t, p, h = self.env.read()
        except OSError:
            self.env = None
            w.errors += 1
            self._env_fault()
            return
        if p is None or h is None:
            return  # not measured (oversampling 0): config allows 1..5 only
        if not (-4000 <= t <= 8500 and 0 <= h <= 10000 and 30000 <= p <= 110000):
            w.errors += 1
            if not self.faults & F_ENV_RANGE:
                print("env: reading out of range")
            self.faults |= F_ENV_RANGE
            return
        self.faults &= ~F_ENV_RANGE
        last = self.last_raw
        if last[0] == t and last[1] == h and last[2] == p:
            self.same += 1
            if self.same >= _STUCK_SAMPLES:
                if not self.faults & F_ENV_STUCK:
                    print("env: sensor stuck")
                    self.faults |= F_ENV_STUCK
                w.errors += 1
                return
        else:
            self.same = 0
            self.faults &= ~F_ENV_STUCK
        last[0] = t
        last[1] = h
        last[2] = p
        w.add(t, p, h)

    def _env_fault(self):
        # Tell a missing sensor (no answer) from a wrong chip (answers, wrong id).
        was = self.faults & (F_ENV_MISSING | F_ENV_CHIP)
        i2c = self.i2c
        if i2c is None:
            return
        try:
            i2c.readfrom_mem(0x76, 0xD0, 1)
            self.faults = (self.faults & ~F_ENV_MISSING) | F_ENV_CHIP
        except OSError:
            self.faults = (self.faults & ~F_ENV_CHIP) | F_ENV_MISSING
        if not was:
            what = "chip id" if self.faults & F_ENV_CHIP else "no answer"
            print("env: sensor fault (%s)" % what)

    # ---- windows ---------------------------------------------------------------------------
    def _windows(self):
        """Close every window that has ended; return seconds until the next one ends."""
        if not hal.clock_valid():
            return None
        self.faults &= ~F_CLOCK
        now = hal.epoch()
        wake = None
        for name in _ORDER:
            if name not in self.start:
                continue
            length = self.length[name]
            start = self.start[name]
            if start < 0:
                self._open(name, window.window_start(now, length), now)
            elif now >= start + length:
                self._close(name, start, length)
                self._open(name, window.window_start(now, length), now)
            left = self.start[name] + length - now
            if wake is None or left < wake:
                wake = left
        return wake

    def _open(self, name, start, now):
        self.start[name] = start
        if name == "env":
            self.envw.reset()
            # Samples the window can still get, so missing ones are counted as lost.
            self.env_first = now
            # Sample mid-period on the wall clock (at :15 and :45 for 30 s), never on a window
            # boundary, where RTC and tick timer may disagree by a few ms about which side.
            per = self.env_period
            if per:
                phase = (hal.epoch_ms() - per // 2) % per
                self.next_env = hal.ticks_add(hal.ticks_ms(), (per - phase) % per)

    def _expected(self, start, length):
        # Sample instants are start + per/2 + k * per; count those at or after the first.
        per = self.env_period or 1000
        off = (self.env_first - start) * 1000 - per // 2
        skipped = (off + per - 1) // per if off > 0 else 0
        n = length * 1000 // per - skipped
        return n if n > 0 else 0

    def _close(self, name, start, length):
        if name == "env":
            w = self.envw
            self.errors += w.errors
            if self.gate is None:
                self._bench_env(start, length, w)
            else:
                self._emit(self.gate.env(start, length, w, self._expected(start, length)))
        elif name == "doorway" and self.line is not None:
            n_in, n_out = self.line.take()
            if self.gate is None:
                print("win %s doorway in=%d out=%d" % (_stamp(start), n_in, n_out))
            else:
                for r in self.gate.counts("doorway", start, length, (n_in, n_out), (2, 3)):
                    self._emit(r)
        elif name == "motion" and self.motion is not None:
            n = self.motion.take()
            if self.gate is None:
                print("win %s motion n=%d" % (_stamp(start), n))
            else:
                for r in self.gate.counts("motion", start, length, (n,), (4,)):
                    self._emit(r)
        elif name == "ble" and self.presence is not None:
            ok = not self.faults & F_BLE_OFF
            ones = self.presence.ones()  # the gate noises set bits, not the estimate
            n = self.presence.roll()
            if self.gate is None:
                print("win %s ble distinct=%d%s" % (_stamp(start), n, "" if ok else " (off)"))
            else:
                for r in self.gate.counts("ble", start, length, (ones,), (5,), ok):
                    self._emit(r)
        elif name == "health":
            self._health(start, length)

    def _bench_env(self, start, length, w):
        if w.t.n:
            print(
                "win %s env t=%s/%s/%sC rh=%s%% p=%dPa n=%d lost=%d err=%d"
                % (
                    _stamp(start), _fmt_centi(w.t.mean()), _fmt_centi(w.t.lo),
                    _fmt_centi(w.t.hi), _fmt_centi(w.h.mean()), w.p.mean(), w.t.n,
                    max(0, self._expected(start, length) - w.t.n), w.errors,
                )
            )
        else:
            print("win %s env none lost=%d err=%d" % (
                _stamp(start), self._expected(start, length), w.errors))

    def _health(self, start, length):
        gc.collect()
        up = hal.ticks_diff(hal.ticks_ms(), self.boot_ms) // 1000
        depth = self.uplink.depth if self.uplink is not None else 0
        # The total ever dropped, not a delta: a health record shed by a full outbox then
        # loses nothing, the next one that arrives still tells the whole count.
        dropped = self.uplink.dropped if self.uplink is not None else 0
        errors = self.errors
        fields = {
            20: up,
            21: self.boots,
            22: _CAUSE_CODES.get(self.cause, 4),
            23: hal.mem_free(),
            24: errors,
            25: self.faults,
            26: depth,
            27: dropped,
        }
        self.errors = 0
        if self.gate is None:
            print(
                "win %s health up=%ds boots=%d cause=%s free=%d err=%d faults=0x%02x q=%d"
                % (_stamp(start), up, self.boots, self.cause, fields[23], errors, self.faults,
                   depth)
            )
        else:
            self._emit(self.gate.health(start, length, fields))

    def _emit(self, record):
        if record is None:
            return
        print("rel " + _describe(record))
        if self.uplink is not None:
            from sensor import cbor

            try:
                self.uplink.submit(cbor.dumps(record))
            except Exception as e:  # a full flash or a broken outbox must not stop sensing
                self.errors += 1
                print("uplink: submit failed: %s" % (e.args[0] if e.args else type(e).__name__))
            self.next_pump = hal.ticks_ms()

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
    # Forget modules needed only at boot, from sys.modules and from the package, so their
    # code can be collected: code loaded from flash lives in RAM.
    pkg = sys.modules.get("sensor")
    for n in names:
        sys.modules.pop("sensor." + n, None)
        if pkg is not None and hasattr(pkg, n):
            delattr(pkg, n)
    gc.collect()


def _load_config():
    from sensor import config

    return config.load()


def _load_identity():
    """(identity or None, damaged): a damaged identity file still means provisioned."""
    from sensor import identity

    try:
        return identity.load(), False
    except ValueError:
        return None, True


def _load_policy(ident, damaged):
    """The policy in force; None only on a board never provisioned (bench mode).

    Once an identity or a policy file exists, whatever fails to load fails closed (health
    only, one console line), never open: no bench output on a provisioned board.
    """
    from sensor import policy

    if not ident and not damaged:
        try:
            os.stat(policy.PATH)
        except OSError:
            return None
    if damaged:
        reason = "identity: identity file damaged"
    else:
        try:
            return policy.load()  # says on the console which streams it refuses
        except policy.PolicyError as e:
            reason = "policy: " + e.args[0]
        except Exception as e:  # a hostile file must not crash the board into a boot loop
            reason = "policy: cannot be read (%s)" % type(e).__name__
    print(reason + "; " + policy.CLOSED_SUFFIX)
    return policy.closed(reason)


_NAMES = {1: "env", 2: "door_in", 3: "door_out", 4: "motion", 5: "ble", 6: "health"}
_STATUS = {1: "below-k", 2: "budget-exhausted", 3: "unavailable"}


def _describe(r):
    # One console line for a released record: what leaves the device, nothing else.
    s = "%s %s/%d" % (_NAMES.get(r[7], "?"), _stamp(r[0]), r[1])
    if 16 in r:
        return s + " " + _STATUS.get(r[16], "?")
    if 6 in r:
        return s + " value=%d" % r[6]
    keys = sorted(k for k in r if k not in (0, 1, 2, 7, 17))
    for k in keys:
        s += " %d=%d" % (k, r[k])
    return s


def setup():
    return App()


def run():
    # The main loop. An emulated board may drive setup()/step() itself (same behaviour), to
    # measure the live heap between steps.
    app = setup()
    while True:
        hal.idle(app.step())
