"""A statistical audit of a differential-privacy claim from samples of a mechanism's output.

The distinguishing-test style of Ding et al. 2018 ("Detecting Violations of Differential
Privacy", CCS) and Jagielski et al. 2020 ("Auditing Differentially Private Machine Learning",
NeurIPS): run the mechanism many times on two neighbouring inputs, and for each event S of a
family fixed in advance bound the two probabilities with exact (Clopper-Pearson) confidence
intervals. An epsilon-DP mechanism has P0(S) <= e^eps P1(S) for every S, so

    eps_lower = ln(lower bound of P0(S) / upper bound of P1(S))

is, with the stated confidence (Bonferroni over the family and both directions), a lower bound
on the mechanism's true privacy loss. If it exceeds the stated epsilon, the claim is false.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

Outcome = Hashable
Event = tuple[str, Callable[[Outcome], bool]]


def _betacf(a: float, b: float, x: float) -> float:
    # Continued fraction of the incomplete beta function (modified Lentz).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-13:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
    lbt += b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def beta_quantile(q: float, a: float, b: float) -> float:
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if betainc(a, b, mid) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """One-sided exact bounds (each holds with probability at least 1 - alpha) for p."""
    lo = 0.0 if k == 0 else beta_quantile(alpha, k, n - k + 1)
    hi = 1.0 if k == n else beta_quantile(1 - alpha, k + 1, n - k)
    return lo, hi


@dataclass
class Finding:
    epsilon_lower: float  # the largest lower bound over the family
    event: str
    direction: str  # "0>1": P0(S) / P1(S), "1>0": the reverse
    p0: float
    p1: float


def audit(
    out0: Sequence[Outcome], out1: Sequence[Outcome], events: Sequence[Event], alpha: float
) -> Finding:
    """The lower confidence bound on epsilon from two samples, over a fixed event family."""
    a = alpha / (2 * len(events))  # Bonferroni: every event, both directions
    best = Finding(-math.inf, "", "", 0.0, 0.0)
    n0, n1 = len(out0), len(out1)
    for name, inside in events:
        k0 = sum(1 for o in out0 if inside(o))
        k1 = sum(1 for o in out1 if inside(o))
        lo0, hi0 = clopper_pearson(k0, n0, a)
        lo1, hi1 = clopper_pearson(k1, n1, a)
        for direction, num, den in (("0>1", lo0, hi1), ("1>0", lo1, hi0)):
            if num <= 0.0:
                continue
            e = math.log(num / den)
            if e > best.epsilon_lower:
                best = Finding(e, name, direction, k0 / n0, k1 / n1)
    return best
