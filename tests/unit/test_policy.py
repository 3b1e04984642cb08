"""Host-side policy files: every rule refuses with its reason; canonical form; stable hash."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from atsource import policy as pol
from atsource.cli import main
from atsource.errors import UserError
from click.testing import CliRunner

DEFAULT = pol.load_policy(pol.DEFAULT)


def mutate(path: str, value: Any) -> dict[str, Any]:
    """The default policy with the value at a dotted path replaced (or removed: value=DROP)."""
    p = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = p
    for key in parents:
        node = node[key]
    if value is DROP:
        del node[last]
    else:
        node[last] = value
    return p


DROP = object()


def test_shipped_policies_are_valid() -> None:
    for f in sorted(pol.POLICIES.glob("*.json")):
        assert pol.validate(pol.load_policy(f)) == [], f
    assert set(DEFAULT["streams"]) == {"env", "doorway", "motion", "ble", "health"}


URL = "must be an https:// URL of at most 200 characters"
TEXT = "must be a non-empty string of at most {} characters"
LIST = "must be a non-empty list of distinct values from: "
ENV_REL = LIST + "mean, min, max, samples"
HEALTH_REL = LIST + "uptime, resets, heap, errors, faults, queue"
KNOWN = "unknown stream (known: env, doorway, motion, ble, noise, air, health)"
OVER = "over the budget 2400 (or set budget.allow_exhaustion)"
PLAN = "budget.epsilon_milli_per_day: the people streams plan {} a day per person ({}), " + OVER


def rng(lo: int, hi: int) -> str:
    return f"must be an integer from {lo} to {hi}"


# (dotted path, new value or DROP, the one reason expected: "path: " is prefixed unless given)
CASES: list[tuple[str, Any, str]] = [
    ("policy", 2, "must be 1 (the policy format version)"),
    ("policy", True, "must be 1 (the policy format version)"),
    ("name", "", TEXT.format(100)),
    ("name", " \t", TEXT.format(100)),
    ("name", "x" * 101, TEXT.format(100)),
    ("name", DROP, "missing"),
    ("operator", "city", "must be an object"),
    ("operator.contact", DROP, "missing"),
    ("operator.url", "http://example.org", URL),
    ("operator.url", "https://a b", URL),
    ("operator.phone", "123", "unknown key"),
    ("purpose", 5, TEXT.format(500)),
    ("legal_basis", DROP, "missing"),
    ("location.coarsen_m", 0, rng(1, 100000)),
    ("location.coarsen_m", 100.0, rng(1, 100000)),
    ("retention.device_days", 366, rng(1, 365)),
    ("retention.receiver_days", "1y", rng(1, 36500)),
    ("retention.forever", True, "unknown key"),
    ("budget.epsilon_milli_per_day", 0, rng(1, 100000)),
    ("budget.allow_exhaustion", 1, "must be true or false"),
    ("streams", [], "must be an object"),
    ("streams.camera", {"window_s": 60}, KNOWN),
    ("streams.env", 900, "must be an object"),
    ("streams.env.window_s", 59, rng(60, 86400)),
    ("streams.env.window_s", 86401, rng(60, 86400)),
    ("streams.env.window_s", 7000, "must divide 86400 (whole windows per day)"),
    ("streams.env.window_s", 900.0, rng(60, 86400)),
    ("streams.env.release", [], ENV_REL),
    ("streams.env.release", ["mean", "mean"], ENV_REL),
    ("streams.env.release", ["raw"], ENV_REL),
    ("streams.env.resolution.temp_centi", 0, rng(1, 10000)),
    ("streams.env.resolution", DROP, "missing"),
    ("streams.env.resolution.noise_db", 1, "unknown key"),
    ("streams.env.k", 10, "unknown key"),
    ("streams.doorway.k", 1, rng(2, 1000)),
    ("streams.doorway.k", DROP, "missing"),
    ("streams.doorway.release", ["in", "through"], LIST + "in, out"),
    ("streams.motion.noise", DROP, "missing"),
    ("streams.motion.noise.mechanism", "laplace", 'must be "geometric"'),
    ("streams.motion.noise.mechanism", DROP, "missing"),
    ("streams.motion.noise.epsilon_milli", 0, rng(1, 10000)),
    ("streams.motion.noise.epsilon_milli", 10001, rng(1, 10000)),
    ("streams.motion.noise.epsilon", 1, "unknown key"),
    ("streams.motion.noise.epsilon_milli", 26, PLAN.format(2424,
     "doorway 600 + motion 624 + ble 1200")),
    ("streams.ble.window_s", 1800, PLAN.format(3600, "doorway 600 + motion 600 + ble 2400")),
    ("streams.doorway.crossings_per_person", 0, rng(1, 1000)),
    ("streams.doorway.crossings_per_person", DROP, "missing"),
    ("streams.motion.events_per_person", 1001, rng(1, 1000)),
    ("streams.ble.rotation_s", 9, rng(10, 86400)),
    ("streams.ble.rotation_s", DROP, "missing"),
    ("streams.motion.events_per_person", 251, "streams.motion.noise.epsilon_milli: one "
     "person's bound 251 at epsilon 25/1000 needs noise of scale 10040, over the device's "
     "limit of 10000"),
    ("streams.ble.rssi_floor", -121, rng(-120, 0)),
    ("streams.ble.sketch_bits", 8000, "must be a power of two from 256 to 65536"),
    ("streams.ble.sketch_bits", 128, rng(256, 65536)),
    ("streams.ble.rssi_flor", -85, "unknown key"),
    ("streams.health.release", ["uptime", "gps"], HEALTH_REL),
    ("streams.health.k", 10, "unknown key"),
    ("policy_url", "example.org/policy", URL),
    ("policy_url", "https://" + "a" * 193, URL),
    ("policy_url", DROP, "missing"),
    ("polcy", 1, "unknown key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    CASES,
    # Stable ids (no object address): parallel workers must collect the same tests.
    ids=[(f"{c[0]} dropped" if c[1] is DROP else f"{c[0]}={c[1]!r}")[:50] for c in CASES],
)
def test_each_rule_refuses_with_its_reason(path: str, value: Any, reason: str) -> None:
    full = reason if reason.startswith(("streams.", "budget.")) else f"{path}: {reason}"
    assert pol.validate(mutate(path, value)) == [full]


def test_budget_exhaustion_is_allowed_only_when_the_policy_says_so() -> None:
    p = mutate("streams.ble.window_s", 900)  # 96 windows x 50 = 4800, 6000 in all > 2400
    assert len(pol.validate(p)) == 1
    p["budget"]["allow_exhaustion"] = True
    assert pol.validate(p) == []
    # One window may never cost more than the whole day.
    p["streams"]["ble"]["noise"]["epsilon_milli"] = 2401
    assert pol.validate(p) == [
        "streams.ble.noise.epsilon_milli: 2401 exceeds budget.epsilon_milli_per_day 2400"
    ]


def test_omitted_streams_are_not_collected_and_valid() -> None:
    p = copy.deepcopy(DEFAULT)
    p["streams"] = {"env": p["streams"]["env"]}
    assert pol.validate(p) == []
    p["streams"] = {}
    assert pol.validate(p) == []


def test_reasons_come_in_a_fixed_order_and_all_at_once() -> None:
    p = mutate("streams.ble.k", 0)
    p["streams"]["doorway"]["k"] = 0
    p["zz"] = 1
    del p["purpose"]
    assert pol.validate(p) == [
        "purpose: missing",
        "streams.ble.k: must be an integer from 2 to 1000",
        "streams.doorway.k: must be an integer from 2 to 1000",
        "zz: unknown key",
    ]
    assert pol.validate([1]) == ["policy: must be a JSON object"]


def test_canonical_form() -> None:
    obj = {"b": [1, -2, True, False, None], "a": {"z": "", "é": 'q"\\\n\t\x01\x7f✓🚲'}}
    assert pol.canonical(obj) == (
        b'{"a":{"z":"","\\u00e9":"q\\"\\\\\\n\\t\\u0001\\u007f\\u2713\\ud83d\\udeb2"},'
        b'"b":[1,-2,true,false,null]}'
    )
    assert pol.policy_hash(obj) == hashlib.sha256(pol.canonical(obj)).digest()
    with pytest.raises(UserError, match=r"b\[1\]: floats are not allowed"):
        pol.canonical({"b": [1, 2.5]})


def test_hash_ignores_layout_and_key_order_but_not_values(tmp_path: Path) -> None:
    h = pol.policy_hash(DEFAULT)
    f = tmp_path / "p.json"
    reordered = dict(reversed(list(DEFAULT.items())))
    f.write_text(json.dumps(reordered, indent=7))
    assert pol.policy_hash(pol.load_policy(f)) == h
    assert pol.policy_hash(mutate("streams.doorway.k", 11)) != h
    assert pol.policy_hash(mutate("name", DEFAULT["name"] + " ")) != h
    # The shipped default's ID is pinned: changing the file changes what every record carries.
    assert h.hex() == "e93ab60473f7e74753f88744b7c3a46e3a31d498be115e7acc8ba7a3faf2f5ce"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[1]", "policy: must be a JSON object"),
        ('{"policy": 1, "policy": 1}', "policy: repeated key"),
        ('{"policy": NaN}', "NaN is not allowed"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(UserError, match=message):
        pol.load_policy(f)


def test_load_policy_raises_the_first_reason(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps(mutate("streams.doorway.k", 1)))
    with pytest.raises(UserError) as e:
        pol.load_policy(f)
    assert str(e.value) == f"{f}: streams.doorway.k: must be an integer from 2 to 1000"
    with pytest.raises(UserError, match="no such policy file"):
        pol.load_policy(tmp_path / "missing.json")


def test_daily_spend_is_per_person_across_streams() -> None:
    assert pol.daily_spend(DEFAULT) == {"doorway": 600, "motion": 600, "ble": 1200}
    assert pol.daily_per_person(DEFAULT) == 2400
    # Phones rotating every 2.5 minutes: 25 addresses at most in an hourly window.
    assert pol.person_bound("ble", DEFAULT["streams"]["ble"]) == 25
    assert pol.person_bound("ble", {"window_s": 3600, "rotation_s": 3600}) == 2
    assert pol.person_bound("ble", {"window_s": 3600, "rotation_s": 7200}) == 2
    assert pol.person_bound("doorway", DEFAULT["streams"]["doorway"]) == 4
    assert pol.person_bound("motion", DEFAULT["streams"]["motion"]) == 8


def test_the_per_person_guarantee_in_plain_words() -> None:
    from atsource.notice import person_text

    assert person_text(DEFAULT) == (
        "One person's presence changes what is published by at most ε = 2.4 a day and ε = 0.1 "
        "in any one window (every hour), all counts together (differential privacy). This "
        "holds for someone who goes through the door at most 4 times every hour, sets off the "
        "motion sensor at most 8 times every hour and carries a phone that changes its "
        "Bluetooth address every 2.5 minutes or less often; someone who does more is protected "
        "proportionally less."
    )


def test_cli_policy_check(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["policy", "check", str(pol.DEFAULT), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["valid"] and out["hash"] == pol.policy_hash(DEFAULT).hex()
    assert out["hash4"] == out["hash"][:8]
    assert out["streams"]["ble"]["epsilon_milli_per_day"] == 1200
    assert out["streams"]["ble"]["person_bound"] == 25
    assert out["epsilon_milli_per_person_day"] == 2400
    r = CliRunner().invoke(main, ["policy", "check", str(pol.DEFAULT)])
    assert r.exit_code == 0 and pol.policy_hash(DEFAULT).hex() in r.output

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(mutate("streams.ble.k", 1) | {"extra": 1}))
    r = CliRunner().invoke(main, ["policy", "check", str(bad)])
    assert r.exit_code == 2
    assert f"{bad}: streams.ble.k: must be an integer from 2 to 1000" in r.output
    assert f"{bad}: extra: unknown key" in r.output
    assert "policy refused (2 problems)" in r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["policy", "check", str(bad), "--json"])
    assert r.exit_code == 2
    assert json.loads(r.output.splitlines()[0])["reasons"] == [
        "streams.ble.k: must be an integer from 2 to 1000",
        "extra: unknown key",
    ]
