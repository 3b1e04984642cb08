"""The public register: a static site (any web host serves it, no server code) listing every
sensor by coarsened location, with its notice, its policy and its history, built from the
operator's signed event log (eventlog.py); and the check of a published register
(docs/register.md).

Layout of the site (every link relative, so the folder can be moved or mirrored):

    index.html                    every sensor: place, coarse location, state, policy ID
    sensors/dev-NNNNNN/index.html one sensor: notice, policy, history (each event, its hash)
    sensors/dev-NNNNNN/notice.*   the notice (HTML, SVG, PNG); its QR code opens this page
    sensors/dev-NNNNNN/policy.json
    log/events.jsonl              the signed, hash-chained log, byte for byte
    log/head.json                 the signed head: number of events and the last hash
    operator.pub                  the operator's Ed25519 public key (PEM)
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import eventlog
from .errors import UserError

URL_ENV = "ATSOURCE_REGISTER_URL"
LOG_FILE = "log/events.jsonl"
HEAD_FILE = "log/head.json"
KEY_FILE = "operator.pub"
EARTH_M_PER_DEG = 111_320.0

EVENT_TEXT = {
    "provisioned": "Provisioned",
    "policy_changed": "Policy changed",
    "key_rotated": "Key rotated",
    "key_revoked": "Key revoked",
    "firmware_updated": "Firmware updated",
    "retired": "Retired",
}


def base_url(given: str | None = None) -> str | None:
    """The register's public address (a setting: --base-url or $ATSOURCE_REGISTER_URL)."""
    url = given or os.environ.get(URL_ENV) or None
    if url is None:
        return None
    if not url.startswith(("https://", "http://")):
        raise UserError(f"register base URL '{url}': must start with https:// or http://")
    return url.rstrip("/") + "/"


def sensor_url(base: str | None, device: str) -> str | None:
    return f"{base}sensors/{device}/" if base else None


# ---- location -------------------------------------------------------------------------------


def parse_location(text: str) -> tuple[float, float]:
    """'48.8584,2.2945' -> (lat, lon)."""
    try:
        lat_s, lon_s = text.split(",")
        lat, lon = float(lat_s), float(lon_s)
    except ValueError:
        raise UserError(
            f"bad location '{text}': give LAT,LON in degrees, e.g. 48.8584,2.2945"
        ) from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UserError(f"bad location '{text}': latitude -90..90, longitude -180..180")
    return lat, lon


def coarsen(lat: float, lon: float, metres: int) -> dict[str, Any]:
    """The centre of the grid cell (``metres`` on a side) holding the point: what is published.
    The exact position is not kept anywhere by the host tools."""
    dlat = metres / EARTH_M_PER_DEG
    clat = (math.floor(lat / dlat) + 0.5) * dlat
    dlon = metres / (EARTH_M_PER_DEG * max(math.cos(math.radians(clat)), 0.01))
    clon = (math.floor(lon / dlon) + 0.5) * dlon
    return {"lat": round(clat, 5), "lon": round(clon, 5), "coarsen_m": metres}


# ---- state of each sensor from its events ---------------------------------------------------


@dataclass
class Sensor:
    device: str
    state: str = "active"
    site: str = ""
    place: str = ""
    location: dict[str, Any] | None = None
    board: str = ""
    kid: str = ""
    policy: dict[str, Any] | None = None
    policy_hash: str = ""
    firmware: str = ""
    installed: str = ""
    events: list[eventlog.Event] = field(default_factory=list)


def sensors(events: list[eventlog.Event]) -> dict[str, Sensor]:
    out: dict[str, Sensor] = {}
    for ev in events:
        name = str(ev.get("device", ""))
        s = out.setdefault(name, Sensor(name))
        s.events.append(ev)
        d = ev.get("data") or {}
        kind = ev.get("event")
        if kind == "provisioned":
            s.state = "active"
            s.site = d.get("site", s.site)
            s.place = d.get("place") or s.place
            s.location = d.get("location") or s.location
            s.board = d.get("board", s.board)
            s.kid = d.get("kid", s.kid)
            s.installed = s.installed or str(ev.get("time", ""))
        if kind in ("provisioned", "policy_changed") and d.get("policy"):
            s.policy = d["policy"]
            s.policy_hash = d.get("policy_hash", "")
        elif kind == "key_rotated":
            s.kid = d.get("kid", s.kid)
        elif kind == "firmware_updated":
            s.firmware = d.get("manifest_sha256", "")
        elif kind == "retired":
            s.state = "retired"
    return out


def describe(ev: eventlog.Event) -> str:
    d = ev.get("data") or {}
    kind = ev.get("event")
    if kind == "provisioned":
        where = d.get("place") or d.get("site", "")
        return (
            f"at {where}; board {d.get('board', '?')}; key {d.get('kid', '?')}; "
            f"policy {d.get('policy_hash', '?')[:8]}"
        )
    if kind == "policy_changed":
        old, new = d.get("old_policy_hash", "?")[:8], d.get("policy_hash", "?")[:8]
        return f"policy {old} replaced by {new}"
    if kind == "key_rotated":
        return f"key {d.get('kid', '?')} replaces {d.get('old_kid', '?')}"
    if kind == "key_revoked":
        return "keys " + ", ".join(d.get("kids", [])) + " revoked"
    if kind == "firmware_updated":
        manifest = str(d.get("manifest_sha256", "?"))[:16]
        return f"{d.get('files', '?')} file(s) changed; manifest {manifest}"
    if kind == "retired":
        return "taken out of service"
    return ""


# ---- build ----------------------------------------------------------------------------------

_CSS = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b2a30;background:#f6f8f9}
main{max-width:960px;margin:auto;padding:24px}
h1{font-size:28px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #d5dde0;padding:6px 8px;text-align:left;vertical-align:top}
code{font-size:13px}.retired{color:#8a4b00}.notice img{max-width:320px;border:1px solid #ccc}
"""


def _page(title: str, body: str, depth: int) -> str:
    e = html.escape
    up = "../" * depth
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<p><a href="{up}index.html">Public register of sensors</a></p>
{body}
</main>
</body>
</html>
"""


def _where(s: Sensor) -> str:
    if not s.location:
        return "not published"
    loc = s.location
    return f"{loc['lat']:.5f}, {loc['lon']:.5f} (within {loc['coarsen_m']} m)"


def build(
    events: list[eventlog.Event],
    private_key: Any,
    out: Path,
    base: str | None,
    lang: str = "en",
) -> list[Path]:
    """Write the register into ``out`` (replacing a previous build); returns the sensor pages."""
    from . import notice

    head = eventlog.signed_head(private_key, events)
    problems = eventlog.check_chain(events, private_key.public_key(), head)
    if problems:  # never publish a log that does not verify
        raise UserError(f"the event log does not verify: {problems[0]}")
    if out.exists():
        if not (out / LOG_FILE).exists() and any(out.iterdir()):
            raise UserError(f"{out} is not empty and not a register: choose another --out")
        shutil.rmtree(out)
    (out / "log").mkdir(parents=True)
    (out / LOG_FILE).write_bytes(b"".join(eventlog.canonical(ev) + b"\n" for ev in events))
    (out / HEAD_FILE).write_text(json.dumps(head, indent=2))
    (out / KEY_FILE).write_bytes(eventlog.public_pem(private_key))

    e = html.escape
    fleet = sensors(events)
    pages: list[Path] = []
    rows = []
    for name in sorted(fleet):
        s = fleet[name]
        d = out / "sensors" / name
        d.mkdir(parents=True)
        notice_html = ""
        if s.policy is not None:
            (d / "policy.json").write_text(json.dumps(s.policy, indent=2, ensure_ascii=False))
            notice.render(
                s.policy,
                d,
                site=s.place or s.site,
                device=name,
                url=sensor_url(base, name),
                lang=lang,
                installed=s.installed[:10] or None,
            )
            notice_html = (
                '<h2>Notice</h2><p class="notice"><a href="notice.html"><img src="notice.png" '
                f'alt="The notice on the sensor"></a></p><p><a href="policy.json">The policy</a> '
                f"(ID <code>{e(s.policy_hash[:8])}</code>)</p>"
            )
        hist = "".join(
            f"<tr><td>{ev.get('seq')}</td>"
            f"<td>{e(str(ev.get('time')).replace('T', ' ').rstrip('Z'))}</td>"
            f"<td>{e(EVENT_TEXT.get(str(ev.get('event')), str(ev.get('event'))))}</td>"
            f"<td>{e(describe(ev))}</td><td><code>{eventlog.event_hash(ev)[:16]}</code></td></tr>"
            for ev in s.events
        )
        body = f"""<h1>Sensor {e(name)}: {e(s.place or s.site)}</h1>
<p>Site <strong>{e(s.site)}</strong>; location {e(_where(s))}; board {e(s.board)};
state <strong class="{e(s.state)}">{e(s.state)}</strong>; installed {e(s.installed[:10])}.</p>
{notice_html}
<h2>History</h2>
<table><tr><th>#</th><th>When (UTC)</th><th>Event</th><th>Details</th><th>Event hash</th></tr>
{hist}</table>
<p>Each event is signed by the operator and chained to the one before it
(<a href="../../log/events.jsonl">the whole log</a>, <a href="../../operator.pub">the key</a>);
check it with <code>atsource register verify URL</code>.</p>
"""
        page = d / "index.html"
        page.write_text(_page(f"Sensor {name}", body, 2), encoding="utf-8")
        pages.append(page)
        rows.append(
            f'<tr><td><a href="sensors/{e(name)}/index.html">{e(name)}</a></td>'
            f"<td>{e(s.place or s.site)}</td><td>{e(_where(s))}</td>"
            f'<td class="{e(s.state)}">{e(s.state)}</td>'
            f"<td><code>{e(s.policy_hash[:8])}</code></td>"
            f"<td>{len(s.events)}</td></tr>"
        )
    fp = eventlog.fingerprint(private_key.public_key())
    body = f"""<h1>Public register of sensors</h1>
<p>{len(fleet)} sensor(s). Locations are rounded to the grid their policy states. What each
sensor measures and sends is on its notice; its history is a signed, append-only log.</p>
<table><tr><th>Sensor</th><th>Place</th><th>Location</th><th>State</th><th>Policy ID</th>
<th>Events</th></tr>
{"".join(rows)}</table>
<p>Operator key fingerprint <code>{fp}</code>; log of {len(events)} event(s):
<a href="{LOG_FILE}">events.jsonl</a>, <a href="{HEAD_FILE}">head.json</a>,
<a href="{KEY_FILE}">operator.pub</a>.</p>
"""
    (out / "index.html").write_text(_page("Public register of sensors", body, 0), encoding="utf-8")
    return pages


# ---- verify ---------------------------------------------------------------------------------


def _fetch(source: str, rel: str) -> bytes | None:
    if "://" in source:
        url = urllib.parse.urljoin(source.rstrip("/") + "/", rel)
        try:
            with urllib.request.urlopen(url, timeout=30) as r:  # noqa: S310 - the user's URL
                return bytes(r.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise UserError(f"{url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise UserError(f"{url}: cannot fetch ({getattr(e, 'reason', e)})") from None
    p = Path(source) / rel
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"{p}: {e.strerror or e}") from None


@dataclass
class Verdict:
    source: str
    events: int
    sensors: int
    fingerprint: str
    pinned: bool
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(source: str, key_pem: bytes | None = None) -> Verdict:
    """Check a published register (a directory or a URL): every event's signature, the chain,
    the order and the signed head. ``key_pem`` pins the operator's key (else the published one)."""
    if "://" not in source and not Path(source).is_dir():
        raise UserError(f"{source}: no such register directory (or give its URL)")
    log = _fetch(source, LOG_FILE)
    if log is None:
        raise UserError(f"{source}: not a register ({LOG_FILE} missing)")
    pub = key_pem if key_pem is not None else _fetch(source, KEY_FILE)
    if pub is None:
        raise UserError(f"{source}: the operator's key ({KEY_FILE}) is missing; give it with --key")
    public_key = eventlog.load_public(pub)
    events = eventlog.parse_lines(log.decode("utf-8", errors="replace"))
    head_raw = _fetch(source, HEAD_FILE)
    head: dict[str, Any] | None = None
    if head_raw is not None:
        try:
            head = json.loads(head_raw)
        except ValueError:
            head = {}
    problems = eventlog.check_chain(events, public_key, head)
    return Verdict(
        source,
        len(events),
        len({e.get("device") for e in events}),
        eventlog.fingerprint(public_key),
        key_pem is not None,
        problems,
    )
