"""The record schema as data: names, units, enums and bits, and hostile records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from atsource import record

DEVICE_MD = Path(__file__).parents[2] / "docs" / "device.md"


def test_env_record_is_named_and_scaled() -> None:
    rec = {0: 1767225600, 1: 900, 2: bytes.fromhex("5a3c9e01"), 7: 1, 3: -512, 4: 4520}
    rec |= {5: 101325, 8: 60, 9: 2, 10: -600, 11: -498, 12: 4400, 13: 4690}
    rec |= {14: 101300, 15: 101400}
    d = record.describe(rec)
    assert d == {
        "window_start": "2026-01-01T00:00:00Z",
        "window_length_s": 900,
        "policy_hash": "5a3c9e01",
        "stream": "env",
        "temperature_mean_c": -5.12,
        "temperature_min_c": -6.0,
        "temperature_max_c": -4.98,
        "humidity_mean_pct": 45.2,
        "humidity_min_pct": 44.0,
        "humidity_max_pct": 46.9,
        "pressure_mean_hpa": 1013.25,
        "pressure_min_hpa": 1013.0,
        "pressure_max_hpa": 1014.0,
        "samples": 60,
        "samples_lost": 2,
    }
    assert list(d) == [n for n in record.FIELD_NAMES if n in d]  # schema order
    json.dumps(d)


def test_count_and_health_records() -> None:
    assert record.describe({7: 2, 6: 37, 17: 1500}) == {
        "stream": "door_in",
        "count": 37,
        "noise_epsilon": 1.5,
    }
    assert record.describe({7: 5, 16: 1, 17: 0})["count_status"] == "below-k"
    assert record.describe({16: 2})["count_status"] == "budget-exhausted"
    h = record.describe({7: 6, 20: 3600, 21: 4, 22: 1, 23: 81920, 24: 0, 25: 0b1010001, 26: 3})
    assert h["stream"] == "health" and h["reset_cause"] == "watchdog"
    assert h["faults"] == ["env-missing", "ble-off", "stream-refused"]
    assert record.describe({25: 0})["faults"] == []
    assert record.describe({25: 1 << 9})["faults"] == ["air-frame"]
    assert record.describe({25: 1 << 15})["faults"] == ["bit15"]
    assert record.describe({7: 99, 22: 9})["stream"] == "99"  # unknown enum values: the number


@pytest.mark.parametrize(
    ("rec", "expect"),
    [
        ({3: b"\x01"}, {"key_3": "01"}),  # wrong type: kept raw under its key
        ({4: -1}, {"key_4": -1}),  # a uint field with a negative value
        ({2: 5}, {"key_2": 5}),
        ({0: 2**64 - 1}, {"key_0": 2**64 - 1}),  # a time beyond what datetime holds
        ({0: -(2**64)}, {"key_0": -(2**64)}),
        ({7: True}, {"key_7": True}),  # bool is not an int here
        ({99: [1, {2: b"\xff"}], 40: "x"}, {"key_99": [1, {"2": "ff"}], "key_40": "x"}),
        ({25: None}, {"key_25": None}),
    ],
)
def test_odd_values_never_raise_and_are_kept(rec: dict[int, object], expect: dict) -> None:
    d = record.describe(rec)  # type: ignore[arg-type]
    assert d == expect
    json.dumps(d)


def test_stream_name() -> None:
    assert record.stream_name({7: 1}) == "env"
    assert record.stream_name({7: 77}) == "77"
    assert record.stream_name({}) is None
    assert record.stream_name({7: b"x"}) is None


def test_schema_matches_docs_device_md() -> None:
    """Every key in docs/device.md's record tables is in FIELDS, and the stream names agree."""
    if not DEVICE_MD.exists():
        pytest.skip("docs/device.md not present")
    text = DEVICE_MD.read_text()
    schema = text[text.index("## Record schema") :]
    keys: set[int] = set()
    for m in re.finditer(r"^\|\s*([\d, ]+?)\s*\|", schema, re.M):
        keys.update(int(k) for k in m[1].split(","))
    for m in re.finditer(r"^Counts .*?key (\d+).*?key (\d+).*?Key (\d+)", schema, re.M | re.S):
        keys.update(int(k) for k in m.groups())
    assert keys <= set(record.FIELDS), keys - set(record.FIELDS)
    streams = re.search(r"\| 7\s*\|.*?\|.*?\|\s*(.+?)\s*\|", schema)
    assert streams is not None
    for num, name in re.findall(r"(\d+) (\w+)", streams[1]):
        assert record.STREAMS[int(num)] == name
