# Boot-time wiring of the main loop (sensor/app.py): configuration, identity and policy loaded,
# the privacy gate, the uplink and the streams made. It runs once; the app then drops this
# module with config, identity, policy and the catalogue, since code loaded from flash lives
# in RAM and none of it is needed again.
import os

from sensor import hal
from sensor.rng import Rng
from sensor.streams import Ctx

_BENCH_WINDOW_S = 900


def build(app):
    """Make app ready to run: everything App.__init__ used to do."""
    app.board = hal.Board()
    app.cause = hal.reset_cause()
    app.boot_ms = hal.ticks_ms()
    app.boots = hal.count_boot()
    print("atsource: %s boot %d (%s)" % (app.board.name, app.boots, app.cause))
    cfg = _load_config()
    wd = cfg["watchdog_ms"]
    app.wdt = None
    app.wdt_ms = 0
    if wd:
        app.wdt, app.wdt_ms = app.board.watchdog(wd)
    app.faults = 0
    app.errors = 0
    from sensor import catalogue as cat

    app.f_clock = cat.fault_bit("clock-unset")
    app.ident, damaged = _load_identity()
    pol = _load_policy(app.ident is not None, damaged)
    if pol is not None and (pol.closed or pol.refused):
        app.faults |= cat.fault_bit("stream-refused")
    seed = app.ident.seed if app.ident is not None else hal.urandom(32)
    app.rng = Rng(seed)
    app.gate = None
    app.uplink = None
    if pol is not None:
        from sensor import gate

        app.gate = gate.Gate(pol, app.rng, gate.Ledger())
        if app.ident is not None:
            app.uplink = _make_uplink(app, cfg)
    # Names for the console's "rel" lines (what leaves the device, said in words).
    app.rnames = dict(cat.RECORDS)
    app.snames = dict(cat.STATUS)
    app.net = hal.Net(cfg["wifi"])
    app.next_ntp = hal.ticks_ms()
    app.next_pump = hal.ticks_ms()
    app.ntp_retry_ms = cfg["ntp_retry_s"] * 1000
    _setup_streams(app, cat, cfg, pol)


def _make_uplink(app, cfg):
    try:
        from sensor import uplink
    except ImportError:
        print("uplink: not installed: records are sealed nowhere")
        return None
    try:
        return uplink.Uplink(app.ident, cfg)
    except Exception as e:  # a broken transport config must not stop sensing
        print("uplink: %s" % (e.args[0] if e.args else type(e).__name__))
        return None


def _setup_streams(app, cat, cfg, pol):
    # One entry per running stream, in the catalogue's order (health last: it reports the
    # errors and faults the others counted): [name, stream, window start, length]; the
    # start is -1 until the clock is set.
    app.run = []
    gate = app.gate
    for e in cat.STREAMS:
        name = e[cat.S_NAME]
        on = e[cat.S_ON]
        if on is not None and not cfg["sensors"].get(name, False):
            continue
        if on is not None and gate is not None and not gate.allows(name):
            continue
        bits = []
        for i in range(len(cat.FAULTS)):
            if cat.FAULTS[i][1] == name:
                bits.append(1 << i)
        ctx = Ctx(app, cfg.get(name, {}), pol.streams.get(name) if pol else None, bits)
        try:
            mod = __import__("sensor.streams." + name, None, None, ("Stream",))
            stream = mod.Stream(ctx)
        except ImportError:
            print("%s: no stream module on this board" % name)
            continue
        except Exception as e:  # a stream that cannot start must not stop the others
            print("%s: %s" % (name, e.args[0] if e.args else type(e).__name__))
            continue
        ctx.cfg = None
        ctx.policy = None
        length = gate.window_s(name, _BENCH_WINDOW_S) if gate else _BENCH_WINDOW_S
        app.run.append([name, stream, -1, length])


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
