# The privacy policy in force (docs/privacy.md): validation and the canonical hash.
#
# The one validator: table-driven from the stream catalogue (sensor/catalogue.py), and the
# host runs this very file (host_tools/atsource/policy.py is a shim over it), so both give the
# same reasons. Here a bad stream is refused on its own (the rest keep running); a fault
# outside `streams` refuses every stream, because the budget, operator or retention the
# streams would run under is not known. The host refuses a policy with any reason at all.
import hashlib
import json
import os

from micropython import const

from sensor import catalogue as cat

PATH = "/policy.json"
VERSION = const(1)
DAY_S = const(86400)
URL_MAX = const(200)

STREAMS = cat.names()
PEOPLE = cat.people()
_TOP = (
    "policy",
    "name",
    "operator",
    "purpose",
    "legal_basis",
    "location",
    "retention",
    "budget",
    "streams",
    "policy_url",
    "dpo",
    "authority",
    "rights",
    "installed",
)
# Optional notice fields (docs/privacy.md): rights a person may exercise, by name.
RIGHTS = ("access", "rectification", "erasure", "restriction", "object", "complaint")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
CLOSED_SUFFIX = "failing closed: nothing about people is collected or released, health only"
# The largest noise scale (bound / epsilon) the device draws: a draw takes about that many
# random words, and each release draws once per count.
MAX_SCALE = const(10000)
# JSON's short escapes, as Python's json.dumps writes them.
_SHORT = {8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"}


class PolicyError(Exception):
    """The file is not a version 1 policy at all (missing, not JSON, a float, wrong version)."""


# What a provisioned device whose policy does not load still runs: health only (uptime, resets,
# faults... nothing about people), so the operator can see the fault and fix the file.
FAILSAFE_HEALTH = {
    "window_s": 900,
    "release": [r[0] for r in cat.stream("health")[cat.S_RELEASES]],
}
NO_POLICY = b"\x00" * 32  # the hash a fail-closed device names in its records (00000000)
# A policy in force is a few KB at most; reading a larger file could exhaust the heap.
MAX_BYTES = const(32768)


class Policy:
    def __init__(
        self, digest, name, streams, refused, budget_milli, exhaust, device_days, closed=""
    ):
        self.hash = digest
        self.hash4 = digest[:4]
        self.name = name
        self.streams = streams
        self.refused = refused
        self.budget_milli = budget_milli
        self.allow_exhaustion = exhaust
        self.device_days = device_days
        # Non-empty (the reason) when the device fails closed: no people stream runs.
        self.closed = closed


def closed(reason, refused=None):
    """The terms of a device whose policy does not load: health only, named 00000000."""
    return Policy(NO_POLICY, "", {"health": FAILSAFE_HEALTH}, refused or {}, 0, False, 1, reason)


# ---- canonical form: sorted keys, "," and ":", ASCII with \uXXXX escapes, decimal ints ----


def _str(buf, s):
    buf.append(0x22)
    for c in s:
        o = ord(c)
        if o == 0x22 or o == 0x5C:
            buf.append(0x5C)
            buf.append(o)
        elif 0x20 <= o < 0x7F:
            buf.append(o)
        elif o in _SHORT:
            buf.extend(_SHORT[o])
        elif o > 0xFFFF:
            # UTF-16 surrogate pair, as JSON escapes require.
            o -= 0x10000
            buf.extend(("\\u%04x\\u%04x" % (0xD800 | (o >> 10), 0xDC00 | (o & 0x3FF))).encode())
        else:
            buf.extend(("\\u%04x" % o).encode())
    buf.append(0x22)


def _write(buf, v):
    # bool before int: True is an int in Python.
    if v is True:
        buf.extend(b"true")
    elif v is False:
        buf.extend(b"false")
    elif v is None:
        buf.extend(b"null")
    elif isinstance(v, int):
        buf.extend(str(v).encode())
    elif isinstance(v, str):
        _str(buf, v)
    elif isinstance(v, dict):
        buf.append(0x7B)
        first = True
        # Sorted by code point (UTF-8 byte order is the same); never dict order.
        for k in sorted(v):
            if not isinstance(k, str):
                raise ValueError("policy keys must be strings")
            if not first:
                buf.append(0x2C)
            first = False
            _str(buf, k)
            buf.append(0x3A)
            _write(buf, v[k])
        buf.append(0x7D)
    elif isinstance(v, (list, tuple)):
        buf.append(0x5B)
        for i in range(len(v)):
            if i:
                buf.append(0x2C)
            _write(buf, v[i])
        buf.append(0x5D)
    else:
        # Floats print differently on single-precision ports: no canonical form.
        raise ValueError("policy holds a float: write scaled integers")


def canonical(obj):
    """The canonical JSON bytes of a policy object (docs/privacy.md)."""
    buf = bytearray()
    _write(buf, obj)
    return bytes(buf)


def digest(obj):
    return hashlib.sha256(canonical(obj)).digest()


def _join_pairs(v):
    out = []
    hi = 0
    for c in v:
        o = ord(c)
        if 0xD800 <= o < 0xDC00:
            if hi:
                out.append(chr(hi))
            hi = o
            continue
        if hi and 0xDC00 <= o < 0xE000:
            out.append(chr(0x10000 + ((hi - 0xD800) << 10) + (o - 0xDC00)))
        else:
            if hi:
                out.append(chr(hi))
            out.append(c)
        hi = 0
    if hi:
        out.append(chr(hi))
    return "".join(out)


def unpair(v):
    """Join each UTF-16 surrogate pair in v's strings into one character (lists and dicts in
    place); returns v, or the joined string.

    MicroPython's json turns the escape pair of a non-BMP character (as in the canonical form
    that `atsource provision` writes) into two lone surrogates; joined, key order and string
    lengths are the host's.
    """
    if isinstance(v, str):
        try:
            if b"\xed" not in v.encode():  # no character in U+D000..U+DFFF: nothing to join
                return v
        except ValueError:  # CPython will not encode a lone surrogate: join them below
            pass
        return _join_pairs(v)
    if isinstance(v, list):
        for i in range(len(v)):
            v[i] = unpair(v[i])
    elif isinstance(v, dict):
        for k in list(v):
            x = unpair(v.pop(k))
            v[unpair(k)] = x
    return v


# ---- validation: reasons are "path: message", in a fixed order (the host's order) ----


def _isint(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _int(errs, d, key, path, lo, hi):
    if key not in d:
        errs.append(path + key + ": missing")
        return None
    v = d[key]
    if not _isint(v) or v < lo or v > hi:
        errs.append("%s%s: must be an integer from %d to %d" % (path, key, lo, hi))
        return None
    return v


def _text(errs, d, key, path, most, required=True):
    if key not in d:
        if required:
            errs.append(path + key + ": missing")
        return
    v = d[key]
    if not isinstance(v, str) or not v.strip(" \t\r\n") or len(v) > most:
        errs.append("%s%s: must be a non-empty string of at most %d characters" % (path, key, most))


def _url(errs, d, key, path, required=True):
    if key not in d:
        if required:
            errs.append(path + key + ": missing")
        return
    v = d[key]
    ok = isinstance(v, str) and v.startswith("https://") and 8 < len(v) <= URL_MAX
    if ok:
        for c in v:
            if not 0x21 <= ord(c) <= 0x7E:
                ok = False
                break
    if not ok:
        errs.append("%s%s: must be an https:// URL of at most %d characters" % (path, key, URL_MAX))


def _obj(errs, d, key, path):
    if key not in d:
        errs.append(path + key + ": missing")
        return None
    v = d[key]
    if not isinstance(v, dict):
        errs.append(path + key + ": must be an object")
        return None
    return v


def _unknown(errs, d, known, path):
    extra = [k for k in d if k not in known]
    extra.sort()
    for k in extra:
        errs.append(path + k + ": unknown key")


def _release(errs, s, path, allowed):
    if "release" not in s:
        errs.append(path + "release: missing")
        return
    v = s["release"]
    ok = isinstance(v, list) and len(v) > 0
    if ok:
        seen = []
        for x in v:
            if not isinstance(x, str) or x not in allowed or x in seen:
                ok = False
                break
            seen.append(x)
    if not ok:
        errs.append(
            "%srelease: must be a non-empty list of distinct values from: %s"
            % (path, ", ".join(allowed))
        )


def person_bound(name, s):
    """The most one person adds to one window (as sensor.gate), None if not valid."""
    w = s.get("window_s")
    return cat.bound(name, s, w if _isint(w) else None)


def planned(name, s):
    """A people stream's planned daily spend per person (windows x epsilon), None if unknown."""
    if not isinstance(s, dict) or name not in PEOPLE:
        return None
    n = s.get("noise")
    if not isinstance(n, dict):
        return None
    w = s.get("window_s", 0)
    e = n.get("epsilon_milli", 0)
    if not _isint(w) or not _isint(e) or w < 60 or w > DAY_S or DAY_S % w or e < 1 or e > 10000:
        return None
    return DAY_S // w * e


def release_names(name):
    return tuple(r[0] for r in cat.stream(name)[cat.S_RELEASES])


def check_stream(name, s, budget=None, exhaust=False):
    """Reasons to refuse stream `name` (empty: valid). budget: the daily cap, None if unknown."""
    path = "streams." + name
    if name not in STREAMS:
        return [path + ": unknown stream (known: " + ", ".join(STREAMS) + ")"]
    entry = cat.stream(name)
    if not isinstance(s, dict):
        return [path + ": must be an object"]
    path += "."
    errs = []
    w = _int(errs, s, "window_s", path, 60, DAY_S)
    if w is not None and DAY_S % w:
        errs.append(path + "window_s: must divide 86400 (whole windows per day)")
        w = None
    _release(errs, s, path, release_names(name))
    known = ["window_s", "release"]
    eps = None
    got = {}
    for f in entry[cat.S_FIELDS]:
        key = f[0]
        t = f[1]
        known.append(key)
        if t == cat.T_NOISE:
            eps = _noise(errs, s, path)
        elif t == cat.T_RES:
            r = _obj(errs, s, key, path)
            if r is not None:
                rp = path + key + "."
                for sub in f[2]:
                    _int(errs, r, sub[0], rp, sub[1], sub[2])
                _unknown(errs, r, [sub[0] for sub in f[2]], rp)
        else:
            v = _int(errs, s, key, path, f[2], f[3])
            if v is not None and t == cat.T_POW2 and v & (v - 1):
                errs.append("%s%s: must be a power of two from %d to %d" % (path, key, f[2], f[3]))
                v = None
            got[key] = v
    bf = entry[cat.S_BOUND]
    b = cat.bound(name, s, w) if bf and got.get(bf) is not None else None
    if eps is not None and budget is not None and eps > budget:
        errs.append(
            "%snoise.epsilon_milli: %d exceeds budget.epsilon_milli_per_day %d"
            % (path, eps, budget)
        )
    if eps is not None and b is not None and b * 1000 > eps * MAX_SCALE:
        errs.append(
            "%snoise.epsilon_milli: one person's bound %d at epsilon %d/1000 needs noise "
            "of scale %d, over the device's limit of %d"
            % (path, b, eps, b * 1000 // eps, MAX_SCALE)
        )
    _unknown(errs, s, known, path)
    return errs


def _noise(errs, s, path):
    # {"mechanism": "geometric", "epsilon_milli": 1..10000}: epsilon_milli, None if invalid
    n = _obj(errs, s, "noise", path)
    if n is None:
        return None
    np_ = path + "noise."
    if "mechanism" not in n:
        errs.append(np_ + "mechanism: missing")
    elif n["mechanism"] != "geometric":
        errs.append(np_ + 'mechanism: must be "geometric"')
    eps = _int(errs, n, "epsilon_milli", np_, 1, 10000)
    _unknown(errs, n, ("mechanism", "epsilon_milli"), np_)
    return eps


def _check_budget(errs, st, budget, exhaust):
    # One daily budget per person across all people streams (sequential composition).
    if budget is None or exhaust:
        return
    parts = []
    total = 0
    for name in PEOPLE:
        if name in st:
            p = planned(name, st[name])
            if p is not None:
                total += p
                parts.append("%s %d" % (name, p))
    if total > budget:
        errs.append(
            "budget.epsilon_milli_per_day: the people streams plan %d a day per person (%s), "
            "over the budget %d (or set budget.allow_exhaustion)"
            % (total, " + ".join(parts), budget)
        )


def _check(d):
    # (reasons before streams, {stream: reasons}, reasons after streams): the host's order.
    g = []
    if not _isint(d.get("policy")) or d["policy"] != VERSION:
        g.append("policy: must be 1 (the policy format version)")
    _text(g, d, "name", "", 100)
    op = _obj(g, d, "operator", "")
    if op is not None:
        _text(g, op, "name", "operator.", 100)
        _text(g, op, "contact", "operator.", 200)
        _url(g, op, "url", "operator.", False)
        _unknown(g, op, ("name", "contact", "url"), "operator.")
    _text(g, d, "purpose", "", 500)
    _text(g, d, "legal_basis", "", 100)
    loc = _obj(g, d, "location", "")
    if loc is not None:
        _int(g, loc, "coarsen_m", "location.", 1, 100000)
        _unknown(g, loc, ("coarsen_m",), "location.")
    ret = _obj(g, d, "retention", "")
    if ret is not None:
        _int(g, ret, "device_days", "retention.", 1, 365)
        _int(g, ret, "receiver_days", "retention.", 1, 36500)
        _unknown(g, ret, ("device_days", "receiver_days"), "retention.")
    bud = _obj(g, d, "budget", "")
    budget = None
    exhaust = False
    if bud is not None:
        budget = _int(g, bud, "epsilon_milli_per_day", "budget.", 1, 100000)
        if "allow_exhaustion" in bud:
            exhaust = bud["allow_exhaustion"]
            if exhaust is not True and exhaust is not False:
                g.append("budget.allow_exhaustion: must be true or false")
                exhaust = False
        _unknown(g, bud, ("epsilon_milli_per_day", "allow_exhaustion"), "budget.")
    per = {}
    st = _obj(g, d, "streams", "")
    if st is not None:
        for name in st:
            per[name] = check_stream(name, st[name], budget, exhaust)
    tail = []
    if st is not None:
        _check_budget(tail, st, budget, exhaust)
    _notice_fields(tail, d)
    _url(tail, d, "policy_url", "")
    _unknown(tail, d, _TOP, "")
    return g, per, tail


def _notice_fields(errs, d):
    # Optional: what the notice tells about rights and oversight, and when it was installed.
    # The device only checks them (the host renders them), with the host's reasons.
    dpo = d.get("dpo")
    if "dpo" in d:
        if isinstance(dpo, dict):
            _text(errs, dpo, "contact", "dpo.", 200)
            _text(errs, dpo, "name", "dpo.", 100, False)
            _unknown(errs, dpo, ("contact", "name"), "dpo.")
        else:
            errs.append("dpo: must be an object")
    au = d.get("authority")
    if "authority" in d:
        if isinstance(au, dict):
            _text(errs, au, "name", "authority.", 100)
            _url(errs, au, "url", "authority.", False)
            _unknown(errs, au, ("name", "url"), "authority.")
        else:
            errs.append("authority: must be an object")
    if "rights" in d:
        r = d["rights"]
        ok = isinstance(r, list) and len(r) > 0
        if ok:
            for i in range(len(r)):
                if r[i] not in RIGHTS or r[i] in r[:i]:
                    ok = False
        if not ok:
            errs.append("rights: must be a list of distinct rights from " + ", ".join(RIGHTS))
    if "installed" in d:
        v = d["installed"]
        ok = isinstance(v, str) and len(v) == 10 and v[4] == "-" and v[7] == "-"
        if ok:
            for i in (0, 1, 2, 3, 5, 6, 8, 9):
                if v[i] not in "0123456789":  # not isdigit(): CPython's takes other digits
                    ok = False
        if ok:
            y = int(v[:4])
            m = int(v[5:7])
            dim = _DAYS[m - 1] if 1 <= m <= 12 else 0
            if m == 2 and (y % 4 != 0 or (y % 100 == 0 and y % 400 != 0)):
                dim = 28
            ok = 2000 <= y <= 2199 and 1 <= int(v[8:]) <= dim
        if not ok:
            errs.append("installed: must be a date YYYY-MM-DD")


def check(d):
    """(reasons outside streams, {stream: reasons}) for a policy object."""
    g, per, tail = _check(d)
    return g + tail, per


def reasons(d):
    """Every reason, in the host's order: empty when the policy is valid."""
    g, per, tail = _check(d)
    names = list(per)
    names.sort()
    for name in names:
        g.extend(per[name])
    return g + tail


def plans(streams):
    """What the gate needs of each valid stream in `streams` (sensor/gate.py), by name:
    (record id, (position in the stream's values, record key, rounding step, ...)) for a
    stream of values; ((position, record id, ...), k, epsilon_milli, person bound, sketch bits)
    for a stream about people: flat tuples, the smallest in RAM. Made at boot from the
    catalogue, so neither the catalogue nor this code stays in RAM."""
    out = {}
    for name in streams:
        s = streams[name]
        e = cat.stream(name)
        rel = s["release"]
        i = 0
        if not e[cat.S_PEOPLE]:
            res = {}
            for f in e[cat.S_FIELDS]:
                if f[1] == cat.T_RES:
                    for sub in f[2]:
                        for k in sub[3]:
                            res[k] = s[f[0]][sub[0]]
            steps = []
            for r, keys in e[cat.S_RELEASES]:
                for k in keys:
                    if r in rel:
                        steps.extend((i, k, res.get(k, 1)))
                    i += 1
            out[name] = (e[cat.S_RECORD], tuple(steps))
            continue
        ids = []
        for r, rid in e[cat.S_RELEASES]:
            if r in rel:
                ids.extend((i, rid))
            i += 1
        m = 0  # a stream whose fields size a sketch counts its set bits (ble)
        for f in e[cat.S_FIELDS]:
            if f[0] == "sketch_bits":
                m = s[f[0]]
        b = cat.bound(name, s, s["window_s"])
        out[name] = (tuple(ids), s["k"], s["noise"]["epsilon_milli"], b, m)
    return out


def load(path=PATH, log=print):
    """The policy in force. Bad streams are refused (and said on the console); the rest run.

    A fault outside the streams fails closed (health only, one console line); a file that is
    not a policy at all raises PolicyError (the caller fails closed with `closed`).
    """
    try:
        if os.stat(path)[6] > MAX_BYTES:
            raise PolicyError("policy file is larger than %d bytes" % MAX_BYTES)
        with open(path) as f:
            d = json.load(f)
        unpair(d)
    except OSError:
        raise PolicyError("no policy file")
    except ValueError:
        raise PolicyError("policy file is not JSON")
    except (RuntimeError, MemoryError):
        # JSON nested too deeply: RuntimeError on MicroPython, RecursionError (one) on CPython.
        raise PolicyError("policy file is nested too deeply or too large")
    if not isinstance(d, dict) or not _isint(d.get("policy")) or d["policy"] != VERSION:
        raise PolicyError("not a version 1 policy")
    try:
        h = digest(d)
    except ValueError as e:
        raise PolicyError(str(e))
    except (RuntimeError, MemoryError):
        raise PolicyError("policy file is nested too deeply or too large")
    g, per = check(d)
    streams = {}
    refused = {}
    for name in per:
        errs = per[name]
        if g:
            refused[name] = g[0]
        elif errs:
            refused[name] = errs[0]
        else:
            streams[name] = d["streams"][name]
    tag = h[:4].hex()
    if g:
        reason = "policy %s: %s" % (tag, g[0])
        log(reason + "; " + CLOSED_SUFFIX)
        return closed(reason, refused)
    for name in sorted(refused):
        log("policy %s: stream %s refused: %s" % (tag, name, refused[name]))
    log("policy %s in force: %s" % (tag, " ".join(sorted(streams)) or "no streams"))
    bud = d["budget"]
    return Policy(
        h,
        d["name"],
        streams,
        refused,
        bud["epsilon_milli_per_day"],
        bud.get("allow_exhaustion", False),
        d["retention"]["device_days"],
    )
