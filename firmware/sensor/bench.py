# Bench mode's console lines (a board never provisioned: nothing is sealed or sent), one per
# closed window: "win <start> <stream> <fields>". Loaded only on such a board, so none of this
# is in RAM on a provisioned one. A stream's fields are its window's values named by the
# catalogue ("laeq=6390 lamin=6044 ... samples=15", then err= if the stream counts errors);
# the five streams that predate the catalogue keep the lines they always had (docs and tests
# read them), below. A new stream needs nothing here.


def _centi(v):
    s = "-" if v < 0 else ""
    v = abs(v)
    return "%s%d.%02d" % (s, v // 100, v % 100)


def _env(s, v):
    if not v[9]:
        return "none lost=%d err=%d" % (v[10], s.err)
    return "t=%s/%s/%sC rh=%s%% p=%dPa n=%d lost=%d err=%d" % (
        _centi(v[0]), _centi(v[3]), _centi(v[6]), _centi(v[1]), v[2], v[9], v[10], s.err)


def _doorway(s, v):
    return "in=%d out=%d" % v


def _motion(s, v):
    return "n=%d" % v


def _ble(s, v):
    return "distinct=%d%s" % (s.n, "" if v else " (off)")


def _health(s, v):
    return "up=%ds boots=%d cause=%s free=%d err=%d faults=0x%02x q=%d" % (
        v[0], v[1], s.app.cause, v[3], v[4], v[5], v[6])


_OLD = {"env": _env, "doorway": _doorway, "motion": _motion, "ble": _ble, "health": _health}


def line(name, s, v):
    """The fields of stream `name`'s bench line for the values v its close() returned."""
    f = _OLD.get(name)
    if f is not None:
        return f(s, v)
    from sensor import catalogue as cat  # only for a stream without a line of its own

    e = cat.stream(name)
    names = []
    for rel, target in e[cat.S_RELEASES]:
        if isinstance(target, tuple):
            for k in target:
                for key in cat.KEYS:
                    if key[0] == k:
                        names.append(key[1])
        else:
            names.append(rel)
    out = "none" if v is None else " ".join(
        "%s=%d" % (names[i], v[i]) for i in range(len(v)) if v[i] is not None)
    err = getattr(s, "err", None)
    return out if err is None else out + " err=%d" % err
