"""The stream catalogue (firmware/sensor/catalogue.py) is the one definition of the stream
vocabulary: the host's tables are built from it, the policy validator is the device's, and
no other file in firmware/ or host_tools/ writes out a stream id, record key or code name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from atsource import devconfig, paths, record, streams
from atsource import policy as host
from sensor import catalogue as cat
from sensor import policy as dev

ROOT = paths.ROOT


def test_the_host_loads_the_firmware_catalogue_itself() -> None:
    assert streams.catalogue() is cat  # the very module the device runs, not a copy
    assert Path(cat.__file__).resolve() == (paths.FIRMWARE / "sensor" / "catalogue.py").resolve()
    assert streams.device_module("policy") is dev


def test_host_record_tables_are_the_catalogues() -> None:
    assert dict(cat.RECORDS) == record.STREAMS
    assert dict(cat.STATUS) == record.COUNT_STATUS
    assert dict(enumerate(cat.CAUSES)) == record.RESET_CAUSES
    assert {i: f[0] for i, f in enumerate(cat.FAULTS)} == record.FAULTS
    assert [(f.key, f.name, f.kind, f.unit, f.scale) for f in record.FIELDS.values()] == [
        tuple(k) for k in cat.KEYS
    ]
    assert tuple(k[1] for k in cat.KEYS) == record.FIELD_NAMES
    assert cat.names() == host.STREAMS and cat.people() == host.PEOPLE
    cfg = devconfig.device_module().DEFAULTS
    assert cfg["sensors"] == {s[0]: s[cat.S_ON] for s in cat.STREAMS if s[cat.S_ON] is not None}


def test_ids_keys_and_names_are_unique_and_every_reference_resolves() -> None:
    keys = [k[0] for k in cat.KEYS]
    assert len(keys) == len(set(keys)), "a record key number is defined twice"
    assert len({k[1] for k in cat.KEYS}) == len(keys), "a record key name is used twice"
    ids = [r[0] for r in cat.RECORDS]
    assert len(ids) == len(set(ids)) and len({r[1] for r in cat.RECORDS}) == len(ids)
    assert len(cat.names()) == len(set(cat.names())) and cat.names()[-1] == "health"
    owners = {}
    for s in cat.STREAMS:
        assert s[cat.S_PEOPLE] == (s[cat.S_RECORD] is None) == (s[cat.S_BOUND] is not None)
        for _, target in s[cat.S_RELEASES]:
            for t in target if isinstance(target, tuple) else (target,):
                assert t in (keys if isinstance(target, tuple) else ids), (s[0], t)
                if isinstance(target, tuple) and t != cat.K_SAMPLES:
                    assert owners.setdefault(t, s[0]) == s[0], f"key {t} in two streams"
        if s[cat.S_RECORD] is not None:
            assert s[cat.S_RECORD] in ids
    for _name, owner in cat.FAULTS:
        assert owner == "" or owner in cat.names()
    assert set(cat.NAMES) <= set(keys)


def test_the_new_streams_are_catalogued_for_both_sides() -> None:
    by_key = {k[0]: k for k in cat.KEYS}
    noise, air = cat.stream("noise"), cat.stream("air")
    assert noise[cat.S_RECORD] == 7 and air[cat.S_RECORD] == 8
    assert record.STREAMS[7] == "noise" and record.STREAMS[8] == "air"
    assert [by_key[k][1:] for k in range(30, 35)] == [
        (n, "int", "dB(A)", 100) for n in ("laeq", "lamin", "lamax", "l10", "l90")
    ]
    names = ("pm1_mean", "pm2_5_mean", "pm10_mean", "pm2_5_max", "pm10_max")
    assert [by_key[k][1:] for k in range(40, 45)] == [(n, "uint", "ug/m3", 10) for n in names]
    for s in (noise, air):
        assert not s[cat.S_PEOPLE] and s[cat.S_ON] is False
        assert cat.K_SAMPLES in streams.record_keys(s[0])
    cfg = devconfig.effective({})
    assert cfg["sensors"]["noise"] is False and cfg["sensors"]["air"] is False
    assert set(cfg["noise"]) == {"every_s", "sens_cdb"}
    assert set(cfg["air"]) == {"every_s", "warmup_s"}
    # Their policy is a window and a release list, like env's: nothing about people.
    p = host.load_policy(host.DEFAULT)
    p["streams"]["noise"] = {"window_s": 900, "release": ["laeq", "lamax", "samples"]}
    p["streams"]["air"] = {"window_s": 3600, "release": ["mean", "max"]}
    assert host.validate(p) == []
    p["streams"]["air"]["k"] = 10
    assert host.validate(p) == ["streams.air.k: unknown key"]


def test_there_is_one_policy_validator(monkeypatch: pytest.MonkeyPatch) -> None:
    # The host's validate is the device's reasons(): change the device's and the host follows.
    assert not hasattr(host, "_check_stream") and not hasattr(host, "_Checker")
    said: list[Any] = []

    def fake(d: Any) -> list[str]:
        said.append(d)
        return ["from the device"]

    monkeypatch.setattr(dev, "reasons", fake)
    p = {"policy": 1}
    assert host.validate(p) == ["from the device"] and said == [p]


def test_the_old_motion_config_name_still_works(tmp_path: Path) -> None:
    cfg = devconfig.effective({"sensors": {"pir": False}})
    assert cfg["sensors"]["motion"] is False and "pir" not in cfg["sensors"]
    assert devconfig.problems({"sensors": {"pir": False}}) == []
    both = devconfig.effective({"sensors": {"pir": False, "motion": True}})
    assert both["sensors"]["motion"] is True  # the stream's own name wins
    f = tmp_path / "config.json"
    f.write_text('{"sensors": {"pir": false}}')
    lines: list[str] = []
    assert devconfig.device_module().load(str(f), lines.append)["sensors"]["motion"] is False
    assert lines == ["config: sensors.pir is deprecated, read as sensors.motion"]


# A definition of the vocabulary: a number paired with a stream, record or code name.
_NAMES = sorted(
    {r[1] for r in cat.RECORDS}
    | {k[1] for k in cat.KEYS}
    | {s[1] for s in cat.STATUS}
    | {f[0] for f in cat.FAULTS}
    | {c for c in cat.CAUSES if "-" in c}
)
_DEF = re.compile(
    r"""(\b\d+[ \t]*[:,][ \t]*["'](?P<a>[\w-]+)["'])|(["'](?P<b>[\w-]+)["'][ \t]*:[ \t]*\d+\b)"""
)


def test_grep_finds_each_id_and_key_defined_in_one_place() -> None:
    found: list[str] = []
    for top in ("firmware", "host_tools"):
        for f in sorted((ROOT / top).rglob("*.py")):
            if f.name == "catalogue.py" and f.parent.name == "sensor":
                continue
            text = f.read_text(encoding="utf-8")
            lines = text.splitlines()
            for m in _DEF.finditer(text):
                name = m.group("a") or m.group("b")
                line = text.count("\n", 0, m.start()) + 1
                doctest = any(">>>" in x for x in lines[max(0, line - 3) : line])  # an example
                if name in _NAMES and not doctest:
                    found.append(f"{f.relative_to(ROOT)}:{line}: {m.group(0)}")
    assert found == [], "vocabulary written out outside the catalogue:\n" + "\n".join(found)


@pytest.mark.parametrize("module", ["app.py", "start.py", "gate.py"])
def test_the_scheduler_and_the_gate_name_no_stream(module: str) -> None:
    text = (paths.FIRMWARE / "sensor" / module).read_text()
    code = "\n".join(line.split("#")[0] for line in text.splitlines())
    for name in cat.names():
        assert f'"{name}"' not in code, f"{module} branches on stream {name}"
