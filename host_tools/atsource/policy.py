"""Privacy policy files (format version 1, docs/privacy.md): load, validate, canonical hash.

The device (firmware/sensor/policy.py) applies the same rules with the same reason texts and
computes the same hash with its own canonical writer; tests cross-check the two. Here any
reason refuses the whole file: the host never provisions or renders a policy with a fault.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Any

from . import paths
from .errors import UserError

VERSION = 1
DAY_S = 86400
URL_MAX = 200
MAX_FILE_BYTES = 64 * 1024  # a policy file; the shipped ones are under 2 KB
POLICIES = paths.ROOT / "policies"
DEFAULT = POLICIES / "default.json"

STREAMS = ("env", "doorway", "motion", "ble", "health")
PEOPLE = ("doorway", "motion", "ble")
RELEASE: dict[str, tuple[str, ...]] = {
    "env": ("mean", "min", "max", "samples"),
    "doorway": ("in", "out"),
    "motion": ("count",),
    "ble": ("distinct",),
    "health": ("uptime", "resets", "heap", "errors", "faults", "queue"),
}
STREAM_KEYS: dict[str, tuple[str, ...]] = {
    "env": ("window_s", "release", "resolution"),
    "doorway": ("window_s", "release", "k", "noise", "crossings_per_person"),
    "motion": ("window_s", "release", "k", "noise", "events_per_person"),
    "ble": ("window_s", "release", "k", "noise", "rssi_floor", "sketch_bits", "rotation_s"),
    "health": ("window_s", "release"),
}
TOP_KEYS = (
    "policy",
    "name",
    "operator",
    "purpose",
    "legal_basis",
    "location",
    "retention",
    "budget",
    "streams",
    "policy_url",
    "dpo",
    "authority",
    "rights",
    "installed",
)
# Optional notice fields (docs/privacy.md): rights a person may exercise, by name.
RIGHTS = ("access", "rectification", "erasure", "restriction", "object", "complaint")

Obj = dict[str, Any]
# The largest noise scale (bound / epsilon) the device draws (firmware/sensor/policy.py).
MAX_SCALE = 10000


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


# ---- validation ----


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Collects "path: message" reasons in the order the device produces them."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def add(self, reason: str) -> None:
        self.reasons.append(reason)

    def present(self, d: Obj, key: str, path: str, required: bool = True) -> bool:
        if key in d:
            return True
        if required:
            self.add(f"{path}{key}: missing")
        return False

    def integer(self, d: Obj, key: str, path: str, lo: int, hi: int) -> int | None:
        if not self.present(d, key, path):
            return None
        v = d[key]
        if not _is_int(v) or not lo <= v <= hi:
            self.add(f"{path}{key}: must be an integer from {lo} to {hi}")
            return None
        return int(v)

    def text(self, d: Obj, key: str, path: str, most: int, required: bool = True) -> None:
        if not self.present(d, key, path, required):
            return
        v = d[key]
        if not isinstance(v, str) or not v.strip(" \t\r\n") or len(v) > most:
            self.add(f"{path}{key}: must be a non-empty string of at most {most} characters")

    def url(self, d: Obj, key: str, path: str, required: bool = True) -> None:
        if not self.present(d, key, path, required):
            return
        v = d[key]
        ok = (
            isinstance(v, str)
            and v.startswith("https://")
            and 8 < len(v) <= URL_MAX
            and all(0x21 <= ord(c) <= 0x7E for c in v)
        )
        if not ok:
            self.add(f"{path}{key}: must be an https:// URL of at most {URL_MAX} characters")

    def obj(self, d: Obj, key: str, path: str) -> Obj | None:
        if not self.present(d, key, path):
            return None
        v = d[key]
        if not isinstance(v, dict):
            self.add(f"{path}{key}: must be an object")
            return None
        return v

    def unknown(self, d: Obj, known: tuple[str, ...], path: str) -> None:
        for k in sorted(set(d) - set(known)):
            self.add(f"{path}{k}: unknown key")

    def release(self, s: Obj, path: str, allowed: tuple[str, ...]) -> None:
        if not self.present(s, "release", path):
            return
        v = s["release"]
        ok = (
            isinstance(v, list)
            and len(v) > 0
            and all(isinstance(x, str) and x in allowed for x in v)
            and len(set(v)) == len(v)
        )
        if not ok:
            self.add(
                f"{path}release: must be a non-empty list of distinct values from: "
                + ", ".join(allowed)
            )


def person_bound(name: str, s: Obj) -> int | None:
    """The most one person adds to one window of a people stream (its L1 sensitivity).

    ble: a phone rotating its address every rotation_s seconds shows at most
    ceil(window / rotation) + 1 addresses in a window; doorway: crossings per person (in and
    out together); motion: PIR events per person. The device's formula is the same
    (firmware/sensor/gate.py `bound`, firmware/sensor/policy.py `person_bound`).
    """
    if name == "ble":
        w, r = s.get("window_s"), s.get("rotation_s")
        if not _is_int(w) or not _is_int(r) or r < 1:
            return None
        return -(-int(w) // int(r)) + 1
    v = s.get("crossings_per_person" if name == "doorway" else "events_per_person")
    return int(v) if _is_int(v) else None


def planned(name: str, s: Any) -> int | None:
    """A people stream's planned daily spend per person (windows x epsilon), None if unknown."""
    if not isinstance(s, dict) or name not in PEOPLE:
        return None
    w = s.get("window_s")
    n = s.get("noise")
    e = n.get("epsilon_milli") if isinstance(n, dict) else None
    if not _is_int(w) or not _is_int(e) or not 60 <= w <= DAY_S or DAY_S % w or not 1 <= e <= 10000:
        return None
    return DAY_S // int(w) * int(e)


def _check_budget(c: _Checker, streams: Obj, budget: int | None, exhaust: bool) -> None:
    # One daily budget per person across all people streams (sequential composition).
    if budget is None or exhaust:
        return
    parts = [(n, planned(n, streams[n])) for n in PEOPLE if n in streams]
    spent = [(n, p) for n, p in parts if p is not None]
    total = sum(p for _, p in spent)
    if total > budget:
        c.add(
            f"budget.epsilon_milli_per_day: the people streams plan {total} a day per person "
            f"({' + '.join(f'{n} {p}' for n, p in spent)}), over the budget {budget} "
            "(or set budget.allow_exhaustion)"
        )


def _check_stream(c: _Checker, name: str, s: Any, budget: int | None, exhaust: bool) -> None:
    path = f"streams.{name}"
    if name not in RELEASE:
        c.add(f"{path}: unknown stream (known: {', '.join(STREAMS)})")
        return
    if not isinstance(s, dict):
        c.add(f"{path}: must be an object")
        return
    path += "."
    window = c.integer(s, "window_s", path, 60, DAY_S)
    if window is not None and DAY_S % window:
        c.add(f"{path}window_s: must divide 86400 (whole windows per day)")
        window = None
    c.release(s, path, RELEASE[name])
    if name == "env":
        r = c.obj(s, "resolution", path)
        if r is not None:
            rp = path + "resolution."
            c.integer(r, "temp_centi", rp, 1, 10000)
            c.integer(r, "rh_centi", rp, 1, 10000)
            c.integer(r, "pressure_pa", rp, 1, 100000)
            c.unknown(r, ("temp_centi", "rh_centi", "pressure_pa"), rp)
    elif name in PEOPLE:
        c.integer(s, "k", path, 2, 1000)
        n = c.obj(s, "noise", path)
        eps: int | None = None
        if n is not None:
            npath = path + "noise."
            if c.present(n, "mechanism", npath) and n["mechanism"] != "geometric":
                c.add(f'{npath}mechanism: must be "geometric"')
            eps = c.integer(n, "epsilon_milli", npath, 1, 10000)
            c.unknown(n, ("mechanism", "epsilon_milli"), npath)
        b: int | None = None
        if name == "ble":
            c.integer(s, "rssi_floor", path, -120, 0)
            bits = c.integer(s, "sketch_bits", path, 256, 65536)
            if bits is not None and bits & (bits - 1):
                c.add(f"{path}sketch_bits: must be a power of two from 256 to 65536")
            if c.integer(s, "rotation_s", path, 10, DAY_S) is not None and window is not None:
                b = person_bound(name, s)
        elif name == "doorway":
            b = c.integer(s, "crossings_per_person", path, 1, 1000)
        else:
            b = c.integer(s, "events_per_person", path, 1, 1000)
        if eps is not None and budget is not None and eps > budget:
            c.add(f"{path}noise.epsilon_milli: {eps} exceeds budget.epsilon_milli_per_day {budget}")
        if eps is not None and b is not None and b * 1000 > eps * MAX_SCALE:
            c.add(
                f"{path}noise.epsilon_milli: one person's bound {b} at epsilon {eps}/1000 needs "
                f"noise of scale {b * 1000 // eps}, over the device's limit of {MAX_SCALE}"
            )
    c.unknown(s, STREAM_KEYS[name], path)


def validate(obj: Any) -> list[str]:
    """Every reason the policy is refused, as "path: message"; empty when it is valid."""
    if not isinstance(obj, dict):
        return ["policy: must be a JSON object"]
    d: Obj = obj
    c = _Checker()
    if not _is_int(d.get("policy")) or d["policy"] != VERSION:
        c.add("policy: must be 1 (the policy format version)")
    c.text(d, "name", "", 100)
    op = c.obj(d, "operator", "")
    if op is not None:
        c.text(op, "name", "operator.", 100)
        c.text(op, "contact", "operator.", 200)
        c.url(op, "url", "operator.", required=False)
        c.unknown(op, ("name", "contact", "url"), "operator.")
    c.text(d, "purpose", "", 500)
    c.text(d, "legal_basis", "", 100)
    loc = c.obj(d, "location", "")
    if loc is not None:
        c.integer(loc, "coarsen_m", "location.", 1, 100000)
        c.unknown(loc, ("coarsen_m",), "location.")
    ret = c.obj(d, "retention", "")
    if ret is not None:
        c.integer(ret, "device_days", "retention.", 1, 365)
        c.integer(ret, "receiver_days", "retention.", 1, 36500)
        c.unknown(ret, ("device_days", "receiver_days"), "retention.")
    bud = c.obj(d, "budget", "")
    budget: int | None = None
    exhaust = False
    if bud is not None:
        budget = c.integer(bud, "epsilon_milli_per_day", "budget.", 1, 100000)
        if "allow_exhaustion" in bud:
            if isinstance(bud["allow_exhaustion"], bool):
                exhaust = bud["allow_exhaustion"]
            else:
                c.add("budget.allow_exhaustion: must be true or false")
        c.unknown(bud, ("epsilon_milli_per_day", "allow_exhaustion"), "budget.")
    streams = c.obj(d, "streams", "")
    if streams is not None:
        for name in sorted(streams):
            _check_stream(c, name, streams[name], budget, exhaust)
        _check_budget(c, streams, budget, exhaust)
    _check_notice_fields(c, d)
    c.url(d, "policy_url", "")
    c.unknown(d, TOP_KEYS, "")
    if not c.reasons:
        try:
            canonical(d)
        except UserError as e:
            c.add(str(e))
    return c.reasons


def _check_notice_fields(c: _Checker, d: Obj) -> None:
    """Optional: the data protection officer, the supervisory authority, the rights the notice
    names and the installation date (the device checks them with the same reasons)."""
    if "dpo" in d:
        dpo = c.obj(d, "dpo", "")
        if dpo is not None:
            c.text(dpo, "contact", "dpo.", 200)
            c.text(dpo, "name", "dpo.", 100, required=False)
            c.unknown(dpo, ("contact", "name"), "dpo.")
    if "authority" in d:
        au = c.obj(d, "authority", "")
        if au is not None:
            c.text(au, "name", "authority.", 100)
            c.url(au, "url", "authority.", required=False)
            c.unknown(au, ("name", "url"), "authority.")
    if "rights" in d:
        r = d["rights"]
        if not (
            isinstance(r, list)
            and r
            and all(isinstance(x, str) and x in RIGHTS for x in r)
            and len(set(r)) == len(r)
        ):
            c.add("rights: must be a list of distinct rights from " + ", ".join(RIGHTS))
    if "installed" in d:
        v = d["installed"]
        try:
            ok = (
                isinstance(v, str)
                and len(v) == 10
                and v[4] == v[7] == "-"
                and all(v[i] in "0123456789" for i in (0, 1, 2, 3, 5, 6, 8, 9))
                and 2000 <= date.fromisoformat(v).year <= 2199
            )
        except ValueError:
            ok = False
        if not ok:
            c.add("installed: must be a date YYYY-MM-DD")


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
    for name in PEOPLE:
        s = policy["streams"].get(name)
        if s is not None:
            out[name] = DAY_S // int(s["window_s"]) * int(s["noise"]["epsilon_milli"])
    return out


def daily_per_person(policy: Obj) -> int:
    """The most one person's presence costs in a day, in milli-epsilon, across all streams."""
    return min(sum(daily_spend(policy).values()), int(policy["budget"]["epsilon_milli_per_day"]))
