"""The device's policy module (firmware/sensor/policy.py) under CPython: its own canonical
writer gives json.dumps's bytes (the host's hash); loading a file refuses exactly the streams
the validator finds fault with (there is one validator: tests/unit/test_stream_catalogue.py)
and keeps the good ones."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from atsource import policy as host
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor import policy as dev

DEFAULT = host.load_policy(host.DEFAULT)

# JSON values without floats (the policy format has none) and without lone surrogates (not
# representable in UTF-8, so no policy file can hold them).
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=400)
def test_canonical_bytes_match_the_host(obj: Any) -> None:
    assert dev.canonical(obj) == host.canonical(obj)


def test_default_policy_hash_matches_the_host(tmp_path: Path) -> None:
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(DEFAULT, indent=3, ensure_ascii=False))
    lines: list[str] = []
    p = dev.load(str(f), log=lines.append)
    assert p.hash == host.policy_hash(DEFAULT) and p.hash4 == p.hash[:4]
    assert sorted(p.streams) == ["ble", "doorway", "env", "health", "motion"]
    assert p.refused == {} and p.budget_milli == 2400 and p.device_days == 7
    assert p.streams["ble"] == DEFAULT["streams"]["ble"]
    assert lines == [f"policy {p.hash[:4].hex()} in force: ble doorway env health motion"]


# ---- random valid policies: the same hash however the file is laid out ----

_windows = st.sampled_from([60, 300, 900, 1800, 3600, 7200, 21600, 86400])


@st.composite
def valid_policies(draw: st.DrawFn) -> dict[str, Any]:
    p = copy.deepcopy(DEFAULT)
    p["name"] = draw(
        st.text(st.characters(exclude_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=40)
    )
    p["purpose"] = draw(st.text(st.characters(exclude_categories=("Cs",)), max_size=60)) + "x"
    p["budget"] = {"epsilon_milli_per_day": 100000, "allow_exhaustion": draw(st.booleans())}
    streams: dict[str, Any] = {}
    for name in draw(st.sets(st.sampled_from(sorted(DEFAULT["streams"])))):
        s = copy.deepcopy(DEFAULT["streams"][name])
        s["window_s"] = draw(_windows)
        s["release"] = draw(st.lists(st.sampled_from(host.RELEASE[name]), min_size=1, unique=True))
        if "k" in s:
            s["k"] = draw(st.integers(2, 1000))
            # 3 streams x 1440 windows x 23 fit the budget; the bounds keep the noise scale
            # (bound / epsilon) within the device's limit.
            s["noise"]["epsilon_milli"] = draw(st.integers(20, 23))
            if name == "ble":
                s["rotation_s"] = draw(st.integers(max(10, s["window_s"] // 100), 86400))
            else:
                key = "crossings_per_person" if name == "doorway" else "events_per_person"
                s[key] = draw(st.integers(1, 100))
        streams[name] = s
    p["streams"] = streams
    assert host.validate(p) == [], host.validate(p)
    return p


@given(valid_policies(), st.sampled_from([None, 0, 2]), st.booleans())
@settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_random_valid_policies_hash_alike(
    tmp_path: Path, p: dict[str, Any], indent: int | None, ascii_only: bool
) -> None:
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(p, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
    got = dev.load(str(f), log=lambda _: None)
    assert got.hash == host.policy_hash(host.load_policy(f))
    assert got.refused == {} and set(got.streams) == set(p["streams"])


# ---- random faults: the same reasons, and the device keeps the streams that are fine ----

_paths: list[list[str]] = []


def _collect(node: Any, prefix: list[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _paths.append([*prefix, k])
            _collect(v, [*prefix, k])


_collect(DEFAULT, [])
_values = st.one_of(
    json_values,
    st.integers(-200, 100000),
    st.sampled_from([0, 1, 2, 59, 60, 7000, 86400, 256, 8192, 10001, -85, 2.5, "geometric"]),
    st.lists(st.sampled_from(["mean", "in", "count", "distinct", "uptime", "raw"]), max_size=3),
)


@st.composite
def faulty_policies(draw: st.DrawFn) -> dict[str, Any]:
    p = copy.deepcopy(DEFAULT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths))
        node: Any = p
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if not isinstance(node, dict):
                continue
            action = draw(st.sampled_from(["set", "drop", "add"]))
            if action == "drop":
                node.pop(path[-1], None)
            elif action == "add":
                node[draw(st.sampled_from(["kk", "epsilon", "camera", "x"]))] = draw(_values)
            else:
                node[path[-1]] = draw(_values)
    return p


def _has_float(v: Any) -> bool:
    if isinstance(v, float):
        return True
    if isinstance(v, dict):
        return any(_has_float(x) for x in v.values())
    if isinstance(v, list):
        return any(_has_float(x) for x in v)
    return False


@given(faulty_policies())
@settings(
    max_examples=400,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_load_refuses_what_the_validator_says(tmp_path: Path, p: dict[str, Any]) -> None:
    reasons = host.validate(p)
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(p))
    version_ok = p.get("policy") == 1 and p.get("policy") is not True
    if _has_float(p) or not version_ok:
        with pytest.raises(dev.PolicyError):
            dev.load(str(f), log=lambda _: None)
        return
    got = dev.load(str(f), log=lambda _: None)
    streams = p["streams"] if isinstance(p.get("streams"), dict) else {}
    outside = [r for r in reasons if not r.startswith("streams.")]
    if outside:
        # A fault outside the streams refuses every stream, with that reason: fail closed.
        assert got.streams == {"health": dev.FAILSAFE_HEALTH} and got.closed
        assert got.refused == dict.fromkeys(streams, outside[0])
        assert got.hash == dev.NO_POLICY
        return
    assert got.hash == host.policy_hash(p) and not got.closed
    for name in streams:
        mine = [
            r
            for r in reasons
            if r.startswith(f"streams.{name}:") or r.startswith(f"streams.{name}.")
        ]
        if mine:
            assert got.refused[name] == mine[0] and name not in got.streams
        else:
            assert got.streams[name] == streams[name] and name not in got.refused


def test_a_bad_stream_is_refused_and_the_rest_keep_running(tmp_path: Path) -> None:
    p = copy.deepcopy(DEFAULT)
    p["streams"]["ble"]["k"] = 1
    p["streams"]["doorway"]["crossings_per_person"] = 0
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(p))
    lines: list[str] = []
    got = dev.load(str(f), log=lines.append)
    assert sorted(got.streams) == ["env", "health", "motion"]
    assert got.refused == {
        "ble": "streams.ble.k: must be an integer from 2 to 1000",
        "doorway": "streams.doorway.crossings_per_person: must be an integer from 1 to 1000",
    }
    tag = got.hash4.hex()
    assert lines == [
        f"policy {tag}: stream ble refused: streams.ble.k: must be an integer from 2 to 1000",
        f"policy {tag}: stream doorway refused: {got.refused['doorway']}",
        f"policy {tag} in force: env health motion",
    ]
    assert got.hash == host.policy_hash(p)  # the record still names the file in force


def test_a_plan_over_the_per_person_budget_fails_closed(tmp_path: Path) -> None:
    # One budget per person for all people streams: their sum is what a person may spend.
    p = copy.deepcopy(DEFAULT)
    p["streams"]["doorway"]["noise"]["epsilon_milli"] = 26
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(p))
    lines: list[str] = []
    got = dev.load(str(f), log=lines.append)
    assert got.closed and got.streams == {"health": dev.FAILSAFE_HEALTH}
    assert (
        "the people streams plan 2424 a day per person (doorway 624 + motion 600 + ble 1200)"
        in lines[0]
    )
    p["budget"]["allow_exhaustion"] = True  # then the ledger stops releases when it is spent
    f.write_text(json.dumps(p))
    assert not dev.load(str(f), log=lines.append).closed


def test_the_gate_noises_to_the_validators_bound() -> None:
    # One formula (sensor/catalogue.py bound): the validator's check of the noise scale and
    # the gate's noise use the same person bound.
    plans = dev.plans(DEFAULT["streams"])
    for name in dev.PEOPLE:
        s = DEFAULT["streams"][name]
        assert plans[name][3] == dev.person_bound(name, s) == host.person_bound(name, s)
    for w in (60, 900, 3600, 7200, 86400):
        for r in (10, 150, 599, 3600, 86400):
            s = {"window_s": w, "rotation_s": r}
            assert dev.person_bound("ble", s) == -(-w // r) + 1


def test_a_fault_outside_the_streams_refuses_them_all(tmp_path: Path) -> None:
    p = copy.deepcopy(DEFAULT)
    p["retention"]["device_days"] = 0
    f = tmp_path / "policy.json"
    f.write_text(json.dumps(p))
    lines: list[str] = []
    got = dev.load(str(f), log=lines.append)
    assert set(got.refused) == set(p["streams"])
    # Fail closed: health only, on fixed terms, named "no policy" (00000000); one line.
    assert got.streams == {"health": dev.FAILSAFE_HEALTH} and got.hash4 == bytes(4)
    tag = host.policy_hash(p)[:4].hex()
    assert lines == [
        f"policy {tag}: retention.device_days: must be an integer from 1 to 365; failing "
        "closed: nothing about people is collected or released, health only"
    ]
    assert got.closed == f"policy {tag}: retention.device_days: must be an integer from 1 to 365"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no policy file"),
        ("{", "policy file is not JSON"),
        ("[]", "not a version 1 policy"),
        ('{"policy": 2}', "not a version 1 policy"),
        ('{"policy": true}', "not a version 1 policy"),
        ('{"policy": 1, "name": 1.5}', "policy holds a float"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ('{"policy": 1, "x": ' + "[" * 3000 + "]" * 3000 + "}", "nested too deeply"),
        ('{"policy": 1, "name": "' + "x" * 40000 + '"}', "larger than 32768 bytes"),
    ],
)
def test_not_a_policy_at_all(tmp_path: Path, text: str | None, message: str) -> None:
    f = tmp_path / "policy.json"
    if text is not None:
        f.write_text(text)
    with pytest.raises(dev.PolicyError, match=message):
        dev.load(str(f))


def test_unpair_joins_surrogate_pairs_as_micropython_json_leaves_them() -> None:
    # MicroPython's json decodes "\ud83d\udeb2" to two lone surrogates; CPython to one char.
    assert dev.unpair("a\ud83d\udeb2b") == "a🚲b"
    assert dev.unpair({"\ud83d\udeb2": ["\ud83dx", "\udeb2", "\ud83d\ud83d\udeb2"]}) == {
        "🚲": ["\ud83dx", "\udeb2", "\ud83d🚲"]
    }
    assert dev.unpair("한국 plain") == "한국 plain"
    assert dev.unpair([1, True, None]) == [1, True, None]
