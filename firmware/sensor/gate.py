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
#
# The gate knows no stream by name: what each stream may release, how it is rounded and
# whether it is about people (k, noise, ledger) comes from the stream catalogue
# (sensor/catalogue.py) and the policy, read once when the gate is made.
import json
import math
import os

from sensor.catalogue import (
    BELOW_K,
    EXHAUSTED,
    K_COUNT,
    K_EPSILON,
    K_LENGTH,
    K_POLICY,
    K_START,
    K_STATUS,
    K_STREAM,
    UNAVAILABLE,
)
from sensor.presence import linear_count

LEDGER = "/ledger.json"


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
        # Only what releases need is kept, not the policy object nor the catalogue: both can
        # then be dropped from RAM after boot (code and tables loaded from flash live in RAM),
        # and with them the code that reads the catalogue (policy.plans).
        from sensor.policy import plans

        self.hash4 = policy.hash4
        self.budget_milli = policy.budget_milli
        self.rng = rng
        self.ledger = ledger
        # stream -> (record id, (position in the values, record key, rounding step, ...)) for
        # a stream of values, or ((position, record id, ...), k, epsilon, alpha, cap, sketch
        # bits) for a stream about people (policy.plans).
        self._plan = plans(policy.streams)
        for name in self._plan:
            p = self._plan[name]
            if len(p) > 2:
                ids, k, eps, b, m = p
                # Noise of scale bound / epsilon on each released count (doorway in and out:
                # the pair's L1 sensitivity is the bound, so each half gets the same scale
                # and the pair costs epsilon once). Draws stop at 40 scales: a tail of
                # exp(-40), far below any audit.
                self._plan[name] = (ids, k, eps, alpha32(eps, b), 40 * b * 1000 // eps + 100, m)

    def allows(self, stream):
        return stream in self._plan

    def _head(self, stream_id, start, length):
        return {K_START: start, K_LENGTH: length, K_POLICY: self.hash4, K_STREAM: stream_id}

    def release(self, stream, start, length, values):
        """The records a closed window of `stream` may release (a list, maybe empty).

        values: what the stream measured, one value per target of its releases in the
        catalogue's order (record keys, or records for a people stream), None for one not
        measured; or None when the stream is unavailable.
        """
        p = self._plan.get(stream)
        if p is None:
            return ()
        if len(p) == 2:
            r = self._head(p[0], start, length)
            if values is None:
                r[K_STATUS] = UNAVAILABLE
                return (r,)
            st = p[1]
            for j in range(0, len(st), 3):
                v = values[st[j]]
                if v is not None:
                    r[st[j + 1]] = _round_to(v, st[j + 2])
            return (r,)
        return self._counts(stream, start, length, values, p)

    def _counts(self, stream, start, length, values, p):
        """Records for a people stream: true counts -> one record per released count.

        Noised, then withheld when the noised value is below k; one ledger spend covers the
        whole release. For a sketch (ble), values hold the number of set sketch bits (each
        address sets at most one, so one person changes it by at most the bound); the noised
        bit count is turned into a distinct-address estimate afterwards (post-processing).
        """
        ids, k, eps, a, cap, m = p
        out = []
        for j in range(1, len(ids), 2):
            out.append(self._head(ids[j], start, length))
        if values is None:
            for r in out:
                r[K_STATUS] = UNAVAILABLE
            return out
        if not self.ledger.spend(stream, start // 86400, eps, self.budget_milli):
            for r in out:
                r[K_STATUS] = EXHAUSTED
            return out
        for j in range(len(out)):
            r = out[j]
            noisy = values[ids[2 * j]] + self.rng.geometric2(a, cap)
            if m:
                noisy = linear_count(m - min(max(noisy, 0), m - 1), m)
            # Decided on the noised value only (never the true count), so "below k" is
            # post-processing of a differentially private value and leaks nothing more.
            if noisy < k:
                r[K_STATUS] = BELOW_K
            else:
                r[K_COUNT] = noisy
            r[K_EPSILON] = eps
        return out
