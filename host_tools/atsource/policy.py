"""Privacy policy files (format version 1, docs/privacy.md): load, validate, canonical hash.

Validation is the device's own validator (firmware/sensor/policy.py, table-driven from the
stream catalogue), run here under CPython through ``atsource.streams``: one set of rules and
reason texts for both sides. The host adds what only a file on a computer can get wrong (not
an object, floats, lone surrogates, repeated keys) and refuses the whole file on any reason:
it never provisions or renders a policy with a fault. The canonical form is written here with
``json.dumps`` (the device has its own writer, which tests check byte for byte against it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import paths, streams
from .errors import UserError

VERSION = 1
DAY_S = 86400
MAX_FILE_BYTES = 64 * 1024  # a policy file; the shipped ones are under 2 KB
POLICIES = paths.ROOT / "policies"
DEFAULT = POLICIES / "default.json"

Obj = dict[str, Any]


def _device() -> Any:
    return streams.device_module("policy")


def __getattr__(name: str) -> Any:
    # The vocabulary is the catalogue's: STREAMS, PEOPLE, RELEASE read through to it.
    if name == "STREAMS":
        return streams.names()
    if name == "PEOPLE":
        return streams.people()
    if name == "RELEASE":
        return {n: streams.releases(n) for n in streams.names()}
    raise AttributeError(name)


# ---- canonical form and hash ----


def _check_canonical(v: Any, path: str) -> None:
    # json.dumps would write floats, but single-precision ports print them differently.
    if isinstance(v, float):
        raise UserError(f"{path or 'policy'}: floats are not allowed (write scaled integers)")
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise UserError(f"{path or 'policy'}: keys must be strings")
            _check_canonical(x, f"{path}.{k}" if path else k)
    elif isinstance(v, list | tuple):
        for i, x in enumerate(v):
            _check_canonical(x, f"{path}[{i}]")
    elif isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            where = path or "policy"
            raise UserError(f"{where}: not valid Unicode text (lone surrogate)") from None
    elif not (v is None or isinstance(v, bool | int)):
        raise UserError(f"{path or 'policy'}: {type(v).__name__} is not a JSON value")


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, separators ',' and ':', ASCII with \\uXXXX escapes."""
    _check_canonical(obj, "")
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def policy_hash(obj: Any) -> bytes:
    """SHA-256 of the canonical form; records carry its first 4 bytes (docs/device.md)."""
    return hashlib.sha256(canonical(obj)).digest()


# ---- validation: the device's validator ----


def person_bound(name: str, s: Obj) -> int | None:
    """The most one person adds to one window of a people stream (its L1 sensitivity)."""
    v = _device().person_bound(name, s)
    return None if v is None else int(v)


def validate(obj: Any) -> list[str]:
    """Every reason the policy is refused, as "path: message"; empty when it is valid."""
    if not isinstance(obj, dict):
        return ["policy: must be a JSON object"]
    reasons = [str(r) for r in _device().reasons(obj)]
    if not reasons:
        try:
            canonical(obj)
        except UserError as e:
            reasons.append(str(e))
    return reasons


def _no_duplicates(pairs: list[tuple[str, Any]]) -> Obj:
    # Two parsers may keep different copies of a repeated key: refuse the ambiguity.
    out: Obj = {}
    for k, v in pairs:
        if k in out:
            raise UserError(f"{k}: repeated key")
        out[k] = v
    return out


def parse_policy(path: Path) -> Obj:
    """Read a policy file as JSON (no validation); UserError when it cannot be read or breaks
    the limits every file the tools read obeys (size, nesting, integers, Unicode: safeload)."""
    from .safeload import load_json

    obj = load_json(path, "policy", limit=MAX_FILE_BYTES, object_pairs_hook=_no_duplicates)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: policy: must be a JSON object")
    return obj


def load_policy(path: Path | str) -> Obj:
    """A valid policy from a file; UserError with the first reason when it is refused."""
    p = Path(path)
    obj = parse_policy(p)
    reasons = validate(obj)
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise UserError(f"{p}: {reasons[0]}{more}")
    return obj


def daily_spend(policy: Obj) -> dict[str, int]:
    """Milli-epsilon per person each people stream plans to spend in a day (windows x epsilon).

    All people streams draw on one daily budget per person; with allow_exhaustion their sum
    may exceed it, and the device stops releasing when the budget is spent.
    """
    out: dict[str, int] = {}
    for name in streams.people():
        s = policy["streams"].get(name)
        if s is not None:
            out[name] = DAY_S // int(s["window_s"]) * int(s["noise"]["epsilon_milli"])
    return out


def daily_per_person(policy: Obj) -> int:
    """The most one person's presence costs in a day, in milli-epsilon, across all streams."""
    return min(sum(daily_spend(policy).values()), int(policy["budget"]["epsilon_milli_per_day"]))
