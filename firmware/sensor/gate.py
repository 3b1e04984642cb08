# The privacy gate: the one path from the aggregators to the uplink. It turns a closed window
# into a record carrying only what the policy allows (docs/privacy.md):
# - time coarsened to the window (start and length only);
# - environmental values rounded to the policy's resolution, only the aggregates it releases;
# - counts: two-sided geometric noise scaled to the most one person can add to a window (the
#   stream's contribution bound, from the policy), so each window's release is epsilon-DP per
#   person; then withheld when the NOISED value is below k (status "below k"): post-processing,
#   never a look at the true count. Each release spends epsilon from one daily per-person
#   ledger shared by all people streams, kept on flash; once spent: "budget exhausted".
# Every record names the policy hash. Records are dicts; the app encodes them (sensor.cbor).
import json
import math
import os

from micropython import const

from sensor.presence import linear_count

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


def bound(name, s):
    """The most one person can add to one window of stream s (its L1 sensitivity).

    None of the three can tell whose event it is, so nothing can be clamped per person: the
    bound is the policy's assumption and the noise is scaled to it. ble: a phone rotating its
    address every rotation_s seconds shows at most ceil(window / rotation) + 1 addresses in a
    window (each sets at most one sketch bit); doorway: crossings, in and out together (the
    pair is one release); motion: PIR events. Same formula as host_tools/atsource/policy.py.
    """
    if name == "ble":
        return -(-s["window_s"] // s["rotation_s"]) + 1
    if name == "doorway":
        return s["crossings_per_person"]
    if name == "motion":
        return s["events_per_person"]
    return 1


class Ledger:
    # Epsilon spent per person on the current UTC day, in thousandths: one account for all
    # people streams (each stream's share kept). Written (durably, by rename) BEFORE the
    # release it pays for: a crash can waste budget, never overspend it.
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
        """True if cost fits today's per-person budget (and is now recorded).

        One budget for all people streams: a person seen by several of them spends on each
        (sequential composition). spent keeps the share of each stream, for the record.
        """
        if day != self.day:
            self.day = day
            self.spent = {}
        used = 0
        for v in self.spent.values():
            used += v
        if used + cost > budget:
            return False
        self.spent[stream] = self.spent.get(stream, 0) + cost
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
        self._cap = {}
        for name, s in policy.streams.items():
            n = s.get("noise")
            if n:
                # Noise of scale bound / epsilon on each released count (doorway in and out:
                # the pair's L1 sensitivity is the bound, so each half gets the same scale and
                # the pair costs epsilon once).
                b = bound(name, s)
                self._alpha[name] = alpha32(n["epsilon_milli"], b)
                # Draws stop at 40 scales: a tail of exp(-40), far below any audit.
                self._cap[name] = 40 * b * 1000 // n["epsilon_milli"] + 100

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

        Noised, then withheld when the noised value is below k; one ledger spend covers the
        whole release. For ble, values hold the number of set sketch bits (each address sets
        at most one, so one person changes it by at most the bound); the noised bit count is
        turned into a distinct-address estimate afterwards (post-processing).
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
        cap = self._cap.get(stream, 0)
        m = s.get("sketch_bits", 0) if stream == "ble" else 0
        for i in range(len(out)):
            r = out[i]
            noisy = values[i] + self.rng.geometric2(a, cap) if a else values[i]
            if m:
                noisy = linear_count(m - min(max(noisy, 0), m - 1), m)
            # Decided on the noised value only (never the true count), so "below k" is
            # post-processing of a differentially private value and leaks nothing more.
            if noisy < k:
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

