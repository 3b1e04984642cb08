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
    """The rest of App.__init__: (wdt, wdt_ms, ntp_retry_ms, clock fault bit, identity, rng,
    gate, uplink, net, record names, status names, running streams)."""
    print("atsource: %s boot %d (%s)" % (app.board.name, app.boots, app.cause))
    cfg = _load_config()
    wd = cfg["watchdog_ms"]
    wdt = None
    wdt_ms = 0
    if wd:
        wdt, wdt_ms = app.board.watchdog(wd)
    from sensor import catalogue as cat

    ident, damaged = _load_identity()
    pol = _load_policy(ident is not None, damaged)
    if pol is not None and (pol.closed or pol.refused):
        app.faults |= cat.fault_bit("stream-refused")
    app.rng = rng = Rng(ident.seed if ident is not None else hal.urandom(32))
    gate = None
    uplink = None
    if pol is not None:
        from sensor import gate as gatemod

        gate = gatemod.Gate(pol, rng, gatemod.Ledger())
        if ident is not None:
            uplink = _make_uplink(ident, cfg)
    net = hal.Net(cfg["wifi"])
    run = _streams(app, cat, cfg, pol, gate)
    # Names for the console's "rel" lines (what leaves the device, said in words): the
    # records the running streams can make.
    ids = []
    for r in run:
        e = cat.stream(r[0])
        ids.append(e[cat.S_RECORD])
        for _, t in e[cat.S_RELEASES]:
            ids.append(t)
    names = {}
    for rid, n in cat.RECORDS:
        if rid in ids:
            names[rid] = n
    return (wdt, wdt_ms, cfg["ntp_retry_s"] * 1000, cat.fault_bit("clock-unset"), ident, rng,
            gate, uplink, net, names, dict(cat.STATUS), run)


def _make_uplink(ident, cfg):
    try:
        from sensor import uplink
    except ImportError:
        print("uplink: not installed: records are sealed nowhere")
        return None
    try:
        return uplink.Uplink(ident, cfg)
    except Exception as e:  # a broken transport config must not stop sensing
        print("uplink: %s" % (e.args[0] if e.args else type(e).__name__))
        return None


def _streams(app, cat, cfg, pol, gate):
    # One entry per running stream, in the catalogue's order (health last: it reports the
    # errors and faults the others counted): [name, stream, window start, length, end as a
    # tick deadline]; the start is -1 until the clock is set (sensor/app.py _windows).
    run = []
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
        s = pol.streams.get(name) if pol is not None else None
        length = s["window_s"] if s is not None else _BENCH_WINDOW_S
        run.append([name, stream, -1, length, 0])
    return run


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
