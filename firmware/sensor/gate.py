# The privacy gate: the one path from the aggregators to the uplink. It turns a closed window
# into a record carrying only what the policy allows (docs/privacy.md):
# - time coarsened to the window (start and length only);
# - environmental values rounded to the policy's resolution, only the aggregates it releases;
# - counts: withheld below k (status "below k", never the value), otherwise released with
#   two-sided geometric noise of the policy's epsilon; each release spends epsilon from a daily
#   ledger kept on flash, and a stream whose budget is spent sends "budget exhausted" instead.
# Every record names the policy hash. Records are dicts; the app encodes them (sensor.cbor).
import json
import math
import os

from micropython import const

S_ENV = const(1)
S_DOOR_IN = const(2)
S_DOOR_OUT = const(3)
S_MOTION = const(4)
S_BLE = const(5)
S_HEALTH = const(6)

BELOW_K = const(1)
EXHAUSTED = const(2)
UNAVAILABLE = const(3)

LEDGER = "/ledger.json"

# health release name -> record keys
_HEALTH_KEYS = {
    "uptime": (20,),
    "resets": (21, 22),
    "heap": (23,),
    "errors": (24,),
    "faults": (25,),
    "queue": (26, 27),
}


def _round_to(v, step):
    if step <= 1:
        return v
    if v >= 0:
        return (v + step // 2) // step * step
    return -((-v + step // 2) // step * step)


def alpha32(epsilon_milli, sensitivity=1):
    # exp(-epsilon / sensitivity) as a 32-bit fraction, computed once per stream.
    a = math.exp(-epsilon_milli / 1000 / sensitivity)
    return int(a * 4294967296) if a < 1 else 4294967295


class Ledger:
    # Epsilon spent per stream on the current UTC day, in thousandths. Written (durably, by
    # rename) BEFORE the release it pays for: a crash can waste budget, never overspend it.
    def __init__(self, path=LEDGER):
        self.path = path
        self.day = -1
        self.spent = {}
        self.writes = 0
        try:
            with open(path) as f:
                d = json.load(f)
            self.day = d["day"]
            self.spent = d["spent"]
        except (OSError, ValueError, KeyError, TypeError):
            pass

    def _save(self):
        tmp = self.path + ".new"
        with open(tmp, "w") as f:
            json.dump({"day": self.day, "spent": self.spent}, f)
        os.rename(tmp, self.path)
        self.writes += 1

    def spend(self, stream, day, cost, budget):
        """True if cost fits today's budget for the stream (and is now recorded)."""
        if day != self.day:
            self.day = day
            self.spent = {}
        used = self.spent.get(stream, 0)
        if used + cost > budget:
            return False
        self.spent[stream] = used + cost
        self._save()
        return True


class Gate:
    def __init__(self, policy, rng, ledger):
        # Only the policy's data is kept, not the object: the policy module (validation and
        # canonical hashing, several KB of code) can then be dropped from RAM after boot.
        self.streams = policy.streams
        self.hash4 = policy.hash4
        self.budget_milli = policy.budget_milli
        self.rng = rng
        self.ledger = ledger
        self._alpha = {}
        for name, s in policy.streams.items():
            n = s.get("noise")
            if n:
                # Doorway in and out are released together; one person can cross both ways
                # in a window, so each half gets epsilon/2 and the pair costs epsilon.
                sens = 2 if name == "doorway" else 1
                self._alpha[name] = alpha32(n["epsilon_milli"], sens)

    def allows(self, stream):
        return stream in self.streams

    def window_s(self, stream, default=900):
        s = self.streams.get(stream)
        return s["window_s"] if s else default

    def _head(self, stream_id, start, length):
        return {0: start, 1: length, 2: self.hash4, 7: stream_id}

    def env(self, start, length, w, expected):
        """The environment record for a window, or None if the stream is not allowed."""
        s = self.streams.get("env")
        if s is None:
            return None
        r = self._head(S_ENV, start, length)
        rel = s["release"]
        res = s.get("resolution", {})
        rt = res.get("temp_centi", 1)
        rh = res.get("rh_centi", 1)
        rp = res.get("pressure_pa", 1)
        n = w.t.n
        if "samples" in rel:
            r[8] = n
            r[9] = expected - n if expected > n else 0
        if n:
            if "mean" in rel:
                r[3] = _round_to(w.t.mean(), rt)
                r[4] = _round_to(w.h.mean(), rh)
                r[5] = _round_to(w.p.mean(), rp)
            if "min" in rel:
                r[10] = _round_to(w.t.lo, rt)
                r[12] = _round_to(w.h.lo, rh)
                r[14] = _round_to(w.p.lo, rp)
            if "max" in rel:
                r[11] = _round_to(w.t.hi, rt)
                r[13] = _round_to(w.h.hi, rh)
                r[15] = _round_to(w.p.hi, rp)
        return r

    def counts(self, stream, start, length, values, ids, available=True):
        """Records for a people stream: values (true counts) -> list of records, one per id.

        Withheld below k, noised otherwise; one ledger spend covers the whole release.
        """
        s = self.streams.get(stream)
        if s is None:
            return []
        out = []
        for sid in ids:
            out.append(self._head(sid, start, length))
        if not available:
            for r in out:
                r[16] = UNAVAILABLE
            return out
        noise = s.get("noise")
        eps = noise["epsilon_milli"] if noise else 0
        budget = self.budget_milli
        if eps and not self.ledger.spend(stream, start // 86400, eps, budget):
            for r in out:
                r[16] = EXHAUSTED
            return out
        k = s.get("k", 0)
        a = self._alpha.get(stream)
        for i in range(len(out)):
            r = out[i]
            v = values[i]
            noisy = v + self.rng.geometric2(a) if a else v
            # Below k, judged on the true count and on the noisy one: the value is never sent.
            if v < k or noisy < k:
                r[16] = BELOW_K
            else:
                r[6] = noisy
            r[17] = eps
        return out

    def health(self, start, length, fields):
        s = self.streams.get("health")
        if s is None:
            return None
        r = self._head(S_HEALTH, start, length)
        for name in s["release"]:
            for key in _HEALTH_KEYS.get(name, ()):
                if key in fields:
                    r[key] = fields[key]
        return r

