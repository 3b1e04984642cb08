"""The record schema (the plaintext of every frame, docs/device.md) as data.

A record is a CBOR map with small integer keys and scaled integer values. ``FIELDS`` names each
key and says how to turn its integer into a value in a unit a person reads; ``describe`` does
that for one record, for export and display. Keys are global (a key means the same thing in
every stream), so the schema is one table: the stream catalogue's ``KEYS``
(firmware/sensor/catalogue.py), which the device reads too.

``describe`` never raises: a record comes from a device that holds a valid key, but a wrong or
newer firmware may still send a key we do not know or a value of an unexpected type. Such keys
are kept, unscaled, under ``key_<n>`` (bytes as hex), so nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import streams as _streams

_CAT = _streams.catalogue()

# The vocabulary is the stream catalogue's (firmware/sensor/catalogue.py), in host shapes.
STREAMS: dict[int, str] = _streams.enum_names(_CAT.K_STREAM)
# Key 16: why a count stream released no value.
COUNT_STATUS: dict[int, str] = _streams.enum_names(_CAT.K_STATUS)
# Key 22: the cause of the last reset.
RESET_CAUSES: dict[int, str] = _streams.enum_names(22)
# Key 25: health fault bits (bit number -> name).
FAULTS: dict[int, str] = _streams.enum_names(25)


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


_FIELD_LIST = tuple(
    Field(
        int(key),
        str(name),
        str(kind),
        str(unit),
        int(scale),
        _streams.enum_names(key) if key in _CAT.NAMES else None,
    )
    for key, name, kind, unit, scale in _CAT.KEYS
)

FIELDS: dict[int, Field] = {f.key: f for f in _FIELD_LIST}
# Record key by its name, stream id by its name: so code names keys, never numbers.
KEY: dict[str, int] = {f.name: f.key for f in _FIELD_LIST}
STREAM_ID: dict[str, int] = {v: k for k, v in STREAMS.items()}
STATUS_CODE: dict[str, int] = {v: k for k, v in COUNT_STATUS.items()}

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
