"""The record schema (the plaintext of every frame, docs/device.md) as data.

A record is a CBOR map with small integer keys and scaled integer values. ``FIELDS`` names each
key and says how to turn its integer into a value in a unit a person reads; ``describe`` does
that for one record, for export and display. Keys are global (a key means the same thing in
every stream), so the schema is one table.

``describe`` never raises: a record comes from a device that holds a valid key, but a wrong or
newer firmware may still send a key we do not know or a value of an unexpected type. Such keys
are kept, unscaled, under ``key_<n>`` (bytes as hex), so nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

STREAMS: dict[int, str] = {
    1: "env",
    2: "door_in",
    3: "door_out",
    4: "motion",
    5: "ble",
    6: "health",
    15: "selftest",
}

# Key 16: why a count stream released no value.
COUNT_STATUS: dict[int, str] = {1: "below-k", 2: "budget-exhausted", 3: "unavailable"}

# Key 22: the cause of the last reset.
RESET_CAUSES: dict[int, str] = {0: "power", 1: "watchdog", 2: "reset", 3: "deep-sleep", 4: "other"}

# Key 25: health fault bits (bit number -> name).
FAULTS: dict[int, str] = {
    0: "env-missing",
    1: "env-chip-id",
    2: "env-out-of-range",
    3: "env-stuck",
    4: "ble-off",
    5: "clock-unset",
    6: "stream-refused",
}


@dataclass(frozen=True)
class Field:
    """One record key. ``kind``: uint, int, bytes, text, time (Unix seconds), enum (see
    ``names``), bits (see ``names``). ``scale`` divides the integer (100 for hundredths)."""

    key: int
    name: str
    kind: str
    unit: str = ""
    scale: int = 1
    names: dict[int, str] | None = None


_FIELD_LIST = (
    Field(0, "window_start", "time", "UTC"),
    Field(1, "window_length_s", "uint", "s"),
    Field(2, "policy_hash", "bytes", "hex"),
    Field(7, "stream", "enum", names=STREAMS),
    # environment (stream 1)
    Field(3, "temperature_mean_c", "int", "degC", 100),
    Field(10, "temperature_min_c", "int", "degC", 100),
    Field(11, "temperature_max_c", "int", "degC", 100),
    Field(4, "humidity_mean_pct", "uint", "%RH", 100),
    Field(12, "humidity_min_pct", "uint", "%RH", 100),
    Field(13, "humidity_max_pct", "uint", "%RH", 100),
    Field(5, "pressure_mean_hpa", "uint", "hPa", 100),
    Field(14, "pressure_min_hpa", "uint", "hPa", 100),
    Field(15, "pressure_max_hpa", "uint", "hPa", 100),
    Field(8, "samples", "uint"),
    Field(9, "samples_lost", "uint"),
    # counts (streams 2 to 5)
    Field(6, "count", "uint"),
    Field(16, "count_status", "enum", names=COUNT_STATUS),
    Field(17, "noise_epsilon", "uint", "", 1000),
    # health (stream 6)
    Field(20, "uptime_s", "uint", "s"),
    Field(21, "boots", "uint"),
    Field(22, "reset_cause", "enum", names=RESET_CAUSES),
    Field(23, "free_heap_bytes", "uint", "B"),
    Field(24, "sensor_errors", "uint"),
    Field(25, "faults", "bits", names=FAULTS),
    Field(26, "outbox_depth", "uint"),
    Field(27, "frames_dropped_total", "uint"),
    # reserved for the health record: the firmware's version string, once firmware sends it
    Field(28, "firmware_version", "text"),
)

FIELDS: dict[int, Field] = {f.key: f for f in _FIELD_LIST}

# Column order for exports: the fields in schema order, then anything unknown as "extra".
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in _FIELD_LIST)


def stream_name(record: dict[int, Any]) -> str | None:
    v = record.get(7)
    if type(v) is not int:
        return None
    return STREAMS.get(v, str(v))


def _is_int(v: Any) -> bool:
    return type(v) is int  # bool is an int subclass and never a valid record value


def _raw(v: Any) -> Any:
    """A JSON-friendly rendering of any decoded CBOR value (bytes as hex)."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [_raw(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _raw(x) for k, x in v.items()}
    return v


def _value(f: Field, v: Any) -> Any:
    """The named, scaled value, or raise TypeError/ValueError when v does not fit the field."""
    if f.kind == "bytes":
        if not isinstance(v, bytes):
            raise TypeError
        return v.hex()
    if f.kind == "text":
        if not isinstance(v, str):
            raise TypeError
        return v
    if not _is_int(v) or (f.kind != "int" and v < 0):
        raise TypeError
    if f.kind == "time":
        return datetime.fromtimestamp(v, UTC).isoformat().replace("+00:00", "Z")
    if f.kind == "enum":
        assert f.names is not None
        return f.names.get(v, str(v))
    if f.kind == "bits":
        assert f.names is not None
        return [f.names.get(b, f"bit{b}") for b in range(v.bit_length()) if v >> b & 1]
    return v / f.scale if f.scale != 1 else v


def describe(record: dict[int, Any]) -> dict[str, Any]:
    """Named, unit-scaled values of one record, in schema order; unknown keys as key_<n>.

    >>> describe({0: 1767225600, 1: 900, 3: 2153, 7: 1})
    {'window_start': '2026-01-01T00:00:00Z', 'window_length_s': 900, 'stream': 'env', \
'temperature_mean_c': 21.53}
    """
    out: dict[str, Any] = {}
    for f in _FIELD_LIST:
        if f.key not in record:
            continue
        v = record[f.key]
        try:
            out[f.name] = _value(f, v)
        except (TypeError, ValueError, OverflowError, OSError):
            out[f"key_{f.key}"] = _raw(v)  # wrong type or out of range: keep it, unscaled
    for k, v in record.items():
        if k not in FIELDS:
            out[f"key_{k}"] = _raw(v)
    return out
