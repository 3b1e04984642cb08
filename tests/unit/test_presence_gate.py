"""The identifier path (keyed hash, sketch), the generator, the noise law and the privacy gate."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor import cbor, config, gate, policy, window
from sensor.presence import Presence, opted_out
from sensor.rng import Hmac256, Rng

FLAGS = b"\x02\x01\x06"


def adv_named(name: str) -> bytes:
    raw = name.encode()
    return FLAGS + bytes((len(raw) + 1, 0x09)) + raw


@pytest.fixture
def fixed_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    r = random.Random(42)
    monkeypatch.setattr(os, "urandom", lambda n: r.randbytes(n))


def test_hmac_matches_the_standard_library() -> None:
    for key in (b"", b"k" * 16, b"x" * 64, b"y" * 100):
        for msg in (b"", b"abc", bytes(range(7))):
            want = hmac.new(key, msg, hashlib.sha256).digest()
            assert Hmac256(key).digest(msg) == want


def test_opt_out_names_are_recognised_without_copying() -> None:
    assert opted_out(memoryview(adv_named("Pixel 7_nomap")))
    assert opted_out(adv_named("Galaxy_optout"))
    assert not opted_out(adv_named("Mara's Pixel-7"))
    assert not opted_out(FLAGS)
    assert not opted_out(b"\x05\x09ab")  # truncated structure: no crash, no opt-out
    assert not opted_out(b"")


def test_sketch_counts_distinct_addresses_not_adverts(fixed_urandom: None) -> None:
    p = Presence(Rng(b"s" * 32), bits=8192, rssi_floor=-90)
    r = random.Random(1)
    addrs = [r.randbytes(6) for _ in range(2000)]
    for _ in range(3):  # each address heard three times
        for a in addrs:
            p.on_advert(1, memoryview(a), -60, memoryview(FLAGS))
    est = p.roll()
    assert abs(est - 2000) <= 0.03 * 2000
    assert p.estimate() == 0, "the window's bitmap is wiped"


def test_floor_and_opt_out_are_not_counted(fixed_urandom: None) -> None:
    p = Presence(Rng(b"s" * 32), bits=1024, rssi_floor=-89)
    p.on_advert(1, b"\x01" * 6, -90, FLAGS)
    p.on_advert(1, b"\x02" * 6, -40, adv_named("x_nomap"))
    assert p.estimate() == 0 and p.skipped == 2
    p.on_advert(1, b"\x03" * 6, -89, FLAGS)
    assert p.estimate() == 1


def test_a_new_secret_each_window_unlinks_phones(fixed_urandom: None) -> None:
    # The same address lands on unrelated bits in consecutive windows.
    p = Presence(Rng(b"s" * 32), bits=1 << 16)
    positions = []
    for _ in range(8):
        p.on_advert(0, b"\xaa\xbb\xcc\xdd\xee\xff", -50, FLAGS)
        positions.append(bytes(p.map).find(next(b for b in p.map if b)))
        p.roll()
    assert len(set(positions)) >= 7
    # and the message buffer holds no trace of the address after the call
    assert bytes(p._msg[1:]) == bytes(6)


def test_rng_output_depends_on_seed_and_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "urandom", lambda n: bytes(n))  # a dead hardware RNG
    a, b = Rng(b"a" * 32).bytes(64), Rng(b"b" * 32).bytes(64)
    assert a != b, "the provisioned seed alone keeps devices apart"
    assert Rng(b"a" * 32).bytes(64) == a
    monkeypatch.setattr(os, "urandom", lambda n: b"\x01" * n)
    assert Rng(b"a" * 32).bytes(64) != a, "urandom is mixed in"


def test_two_sided_geometric_noise_follows_its_law(fixed_urandom: None) -> None:
    eps = 0.5
    alpha = math.exp(-eps)
    r = Rng(b"n" * 32)
    a32 = gate.alpha32(500)
    n = 20000
    counts: dict[int, int] = {}
    for _ in range(n):
        x = r.geometric2(a32)
        counts[x] = counts.get(x, 0) + 1

    def p(x: int) -> float:
        return (1 - alpha) / (1 + alpha) * alpha ** abs(x)

    chi2 = 0.0
    for x in range(-8, 9):
        e = n * p(x)
        chi2 += (counts.get(x, 0) - e) ** 2 / e
    tail_e = n * (1 - sum(p(x) for x in range(-8, 9)))
    tail_o = sum(c for x, c in counts.items() if abs(x) > 8)
    chi2 += (tail_o - tail_e) ** 2 / tail_e
    assert chi2 < 45.3, chi2  # 18 degrees of freedom: p = 0.0004
    mean = sum(x * c for x, c in counts.items()) / n
    assert abs(mean) < 0.1


class FakePolicy:
    def __init__(self, streams: dict[str, Any], budget: int = 2400) -> None:
        self.streams = streams
        self.hash4 = b"\x12\x34\x56\x78"
        self.budget_milli = budget
        self.refused: dict[str, str] = {}


PEOPLE = {"window_s": 3600, "release": ["count", "distinct"], "k": 10, "events_per_person": 1,
          "crossings_per_person": 2, "rotation_s": 3600, "sketch_bits": 8192,
          "noise": {"mechanism": "geometric", "epsilon_milli": 100}}  # fmt: skip


def test_released_counts_are_never_below_k(tmp_path: Path, fixed_urandom: None) -> None:
    # Withholding looks at the noised value only (post-processing): a small true count may be
    # released (noised up), a released value is never below k, and most small counts are held.
    g = gate.Gate(FakePolicy({"motion": PEOPLE}), Rng(b"g" * 32), gate.Ledger(str(tmp_path / "l")))
    held = 0
    for v in range(200):
        (r,) = g.release("motion", 3600 * v, 3600, (v % 10,))
        assert (6 in r) != (16 in r) and r[17] == 100
        if 6 in r:
            assert r[6] >= 10
        else:
            assert r[16] == gate.BELOW_K
            held += 1
        assert r[2] == b"\x12\x34\x56\x78" and r[0] == 3600 * v and r[1] == 3600
    assert 100 < held < 200


def test_withholding_never_reads_the_true_count(tmp_path: Path) -> None:
    # The same noise draws give the same decision whatever the true count is, once the noised
    # value is the same: the gate's output is a function of the noised value alone.
    class Fixed:
        def __init__(self, x: int) -> None:
            self.x = x

        def geometric2(self, a: int, cap: int = 0) -> int:
            return self.x

    for true, noise in ((9, 1), (10, 0), (0, 10), (30, -20), (5, 4), (9, 0)):
        g = gate.Gate(FakePolicy({"motion": PEOPLE}), Fixed(noise), gate.Ledger("/nonexistent/l"))
        g.ledger.spend = lambda *a: True  # type: ignore[method-assign]
        (r,) = g.release("motion", 0, 3600, (true,))
        assert (r.get(6), r.get(16)) == ((10, None) if true + noise >= 10 else (None, 1))


def test_released_counts_are_noised_and_name_the_policy(
    tmp_path: Path, fixed_urandom: None
) -> None:
    g = gate.Gate(FakePolicy({"motion": PEOPLE}), Rng(b"g" * 32), gate.Ledger(str(tmp_path / "l")))
    vals = [g.release("motion", 3600 * i, 3600, (1000,))[0][6] for i in range(24)]
    assert len(set(vals)) > 5, "noise is drawn each window"
    assert abs(sum(vals) / 24 - 1000) < 15


def test_budget_ledger_stops_releases_and_survives_a_reboot(
    tmp_path: Path, fixed_urandom: None
) -> None:
    path = str(tmp_path / "ledger.json")
    pol = FakePolicy({"ble": PEOPLE}, budget=250)
    g = gate.Gate(pol, Rng(b"g" * 32), gate.Ledger(path))
    day = 20000 * 86400
    assert 16 not in g.release("ble", day, 3600, (500,))[0]
    assert 16 not in g.release("ble", day + 3600, 3600, (500,))[0]
    g2 = gate.Gate(pol, Rng(b"g" * 32), gate.Ledger(path))  # a reboot
    assert g2.release("ble", day + 7200, 3600, (500,))[0][16] == gate.EXHAUSTED
    assert json.loads(Path(path).read_text())["spent"] == {"ble": 200}
    assert 16 not in g2.release("ble", day + 86400, 3600, (500,))[0], "a new day"


def test_doorway_pair_costs_one_epsilon(tmp_path: Path, fixed_urandom: None) -> None:
    door = dict(PEOPLE, release=["in", "out"])
    g = gate.Gate(FakePolicy({"doorway": door}), Rng(b"g" * 32), gate.Ledger(str(tmp_path / "l")))
    rs = g.release("doorway", 0, 3600, (50, 3))
    assert [r[7] for r in rs] == [2, 3]  # door_in, door_out
    assert g.ledger.spent == {"doorway": 100}
    # Each half carries noise of scale bound / epsilon = 2 / 0.1 (the pair's L1 sensitivity).
    assert g._plan["doorway"][3] == gate.alpha32(100, 2) and g._plan["doorway"][4] == 40 * 20 + 100


def test_people_streams_share_one_daily_budget_per_person(
    tmp_path: Path, fixed_urandom: None
) -> None:
    pol = FakePolicy({"motion": PEOPLE, "ble": PEOPLE}, budget=300)
    g = gate.Gate(pol, Rng(b"g" * 32), gate.Ledger(str(tmp_path / "l")))
    day = 20000 * 86400
    assert 16 not in g.release("motion", day, 3600, (500,))[0]
    assert 16 not in g.release("ble", day, 3600, (500,))[0]
    assert 16 not in g.release("motion", day + 3600, 3600, (500,))[0]
    assert g.release("ble", day + 3600, 3600, (500,))[0][16] == gate.EXHAUSTED
    assert g.ledger.spent == {"motion": 200, "ble": 100}


def test_ble_noise_is_on_sketch_bits_and_scaled_to_the_rotation_bound(
    tmp_path: Path, fixed_urandom: None
) -> None:
    ble = dict(PEOPLE, rotation_s=150)  # an hourly window: 25 addresses a phone at most
    g = gate.Gate(FakePolicy({"ble": ble}), Rng(b"g" * 32), gate.Ledger(str(tmp_path / "l")))
    assert policy.person_bound("ble", ble) == 25 and g._plan["ble"][3] == gate.alpha32(100, 25)
    # 2000 set bits of 8192 estimate 2293 addresses: releases centre there, not on 2000
    # (noise std 354 bits, about 1.3 addresses a bit here).
    want = round(-8192 * math.log(1 - 2000 / 8192))
    assert want == 2293
    vals = [g.release("ble", 3600 * i, 3600, (2000,))[0].get(6, 0) for i in range(48)]
    mean = sum(vals) / len(vals)
    assert abs(mean - want) < 4 * 1.3 * 354 / 48**0.5, mean
    assert len(set(vals)) > 40


def test_environment_is_rounded_to_the_policy_resolution() -> None:
    env = {"window_s": 900, "release": ["mean", "samples"],
           "resolution": {"temp_centi": 10, "rh_centi": 100, "pressure_pa": 10}}  # fmt: skip
    g = gate.Gate(FakePolicy({"env": env}), Rng(b"g" * 32), gate.Ledger("/nonexistent/l"))
    w = window.EnvWindow()
    for t, p, h in ((2153, 101325, 4520), (2157, 101331, 4561)):
        w.add(t, p, h)
    t, h, p = w.t, w.h, w.p
    values = (t.mean(), h.mean(), p.mean(), t.lo, h.lo, p.lo, t.hi, h.hi, p.hi, t.n, 30 - t.n)
    (r,) = g.release("env", 900, 900, values)
    assert (r[3], r[4], r[5], r[8], r[9]) == (2160, 4500, 101330, 2, 28)
    assert 10 not in r and 11 not in r, "min and max not released by this policy"
    body = cbor.dumps(r)
    assert cbor2.loads(body) == r


def test_window_mean_rounds_half_away_from_zero() -> None:
    s = window.Stats()
    for v in (-3, -2):
        s.add(v)
    assert s.mean() == -3 and (s.lo, s.hi) == (-3, -2)
    assert window.window_start(1000, 900) == 900


def test_config_keeps_good_values_and_reports_bad_ones(tmp_path: Path) -> None:
    f = tmp_path / "config.json"
    f.write_text(json.dumps({"v": 1, "watchdog_ms": "soon", "bogus": 1,
                             "ble": {"duty_pct": 50, "rssi_floor": 999}}))  # fmt: skip
    lines: list[str] = []
    c = config.load(str(f), lines.append)
    assert c["watchdog_ms"] == 30000 and c["ble"] == {"duty_pct": 50, "rssi_floor": -89}
    assert any("watchdog_ms" in x for x in lines) and any("bogus" in x for x in lines)
    assert any("rssi_floor" in x for x in lines)
    f.write_text("{not json")
    assert config.load(str(f), lines.append)["watchdog_ms"] == 30000
    assert config.load(str(tmp_path / "none.json"), lines.append)["v"] == 1


@settings(max_examples=60, deadline=None)
@given(
    crowd=st.lists(st.binary(min_size=6, max_size=6), min_size=1, max_size=400, unique=True),
    names=st.lists(st.text(min_size=4, max_size=20), max_size=20),
    repeats=st.integers(min_value=1, max_value=3),
)
def test_generated_crowds_leave_no_trace_in_the_sketch(
    crowd: list[bytes], names: list[str], repeats: int
) -> None:
    p = Presence(Rng(b"h" * 32), bits=8192, rssi_floor=-90)
    for _ in range(repeats):
        for i, a in enumerate(crowd):
            name = names[i % len(names)] if names else ""
            p.on_advert(i & 1, memoryview(a), -60, adv_named(name) if name else FLAGS)
    est = p.estimate()
    assert abs(est - len(crowd)) <= max(3, 0.05 * len(crowd))
    # Nothing the object holds contains an address or a name (only bits and a keyed secret).
    held = bytes(p.map) + bytes(p._msg) + bytes(p._mac.ipad) + bytes(p._mac.opad)
    assert not any(a in held or a[::-1] in held for a in crowd if len(set(a)) > 2)
    assert not any(n.encode() in held for n in names if len(n.encode()) >= 4)
    p.roll()
    assert not any(p.map)
