"""`atsource notice` (the citizen-facing notice) and `atsource policy check`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from . import policy as pol
from .errors import UserError

_KID = re.compile(r"[0-9a-fA-F]{10}")
_DEV = re.compile(r"(?:dev-)?(\d{1,9})")


def _device_number(ref: str) -> int | None:
    """A device number from a kid (10 hex digits), 'dev-000007' or '7'; None if neither."""
    if _KID.fullmatch(ref):
        return int(ref[:8], 16)
    m = _DEV.fullmatch(ref)
    return int(m.group(1)) if m else None


def _policy_for_hash4(hash4: str, given: Path | None) -> tuple[Path, dict[str, Any]]:
    """The policy file whose ID is hash4: the one given, else one of the shipped policies."""
    candidates = [given] if given else sorted(pol.POLICIES.glob("*.json"))
    for path in candidates:
        try:
            obj = pol.load_policy(path)
        except UserError:
            if given:
                raise
            continue
        if pol.policy_hash(obj)[:4].hex() == hash4:
            return path, obj
        if given:
            raise UserError(
                f"{path} is policy {pol.policy_hash(obj)[:4].hex()}, the device runs {hash4}"
            )
    raise UserError(
        f"the device runs policy {hash4}, which is none of {pol.POLICIES}/*.json: "
        "pass that policy file with --policy"
    )


def resolve(
    ref: str, registry: Path | None, policy_file: Path | None
) -> tuple[Path, dict[str, Any], str, str | None]:
    """(policy path, policy, site, device name) for a policy file or a registered device."""
    path = Path(ref)
    if path.is_file() or ref.endswith(".json"):
        return path, pol.load_policy(path), "", None
    number = _device_number(ref)
    if number is None:
        raise UserError(f"{ref}: neither a policy file nor a device (kid hex or device number)")
    from .registry import Registry, default_path

    reg_path = registry or default_path()
    if not reg_path.exists():  # opening would create an empty registry
        raise UserError(
            f"{ref}: no registry at {reg_path}: provision a device or give a policy file"
        )
    with Registry.open(reg_path, create=False) as reg:
        row = reg.device(number)
    if row is None:
        raise UserError(f"{ref}: no device {number} in the registry")
    if not row.policy_hash:
        raise UserError(f"{row.name} was provisioned without a policy: there is nothing to show")
    found, obj = _policy_for_hash4(row.policy_hash, policy_file)
    return found, obj, row.site, row.name


def _provisioned(device: str | None, registry: Path | None) -> tuple[str, str | None]:
    """(place name, installation date) of a device, from the public register's log."""
    if device is None:
        return "", None
    from .eventlog import EventLog
    from .registry import default_path

    log = EventLog.for_registry(registry or default_path())
    events = [e for e in log.device_events(device) if e.get("event") == "provisioned"]
    if not events:
        return "", None
    place = str((events[-1].get("data") or {}).get("place", ""))
    return place, str(events[0].get("time", ""))[:10] or None


@click.command()
@click.argument("target", metavar="DEVICE-or-POLICY")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("notice"),
    show_default=True,
    help="Directory for notice.html, notice.svg and notice.png.",
)
@click.option("--site", help="Site name on the sign (default: the device's site, if any).")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="For a device: its policy file, when it is not one of the shipped policies/.",
)
@click.option(
    "--registry",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Device registry (default: $ATSOURCE_REGISTRY or ~/.local/share/atsource/registry.db).",
)
@click.option(
    "--lang",
    default="en",
    show_default=True,
    help="Language of the notice: en, de, fr, es (the catalogues in atsource/catalogues/).",
)
@click.option(
    "--register-url",
    envvar="ATSOURCE_REGISTER_URL",
    help="Base URL of the public register: the QR code opens the device's page there "
    "(env ATSOURCE_REGISTER_URL; default: the policy's policy_url).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def notice(
    target: str,
    out_dir: Path,
    site: str | None,
    policy_file: Path | None,
    registry: Path | None,
    lang: str,
    register_url: str | None,
    as_json: bool,
) -> None:
    """Render the citizen-facing notice for a policy file or a provisioned device.

    Writes a self-contained HTML page and a sign to mount beside the sensor (PNG for print at
    300 dpi, A4, and SVG): what is sensed, what leaves the sensor, what never does, why, who is
    responsible, retention, a QR code to the full policy and the policy ID that every record
    carries. DEVICE is a device number (7, dev-000007) or a kid (10 hex digits); its policy is
    found by ID among the shipped policies/ or given with --policy.

    \b
    Examples:
      atsource notice policies/default.json --site plaza-north --out notice/
      atsource notice 7 --json
    """
    from .catalogue import load
    from .notice import hash_id, render
    from .register import base_url, sensor_url

    load(lang)  # an unknown language is one line, before anything is read
    path, obj, dev_site, device = resolve(target, registry, policy_file)
    place, installed = _provisioned(device, registry)
    where = site if site is not None else (place or dev_site)
    url = sensor_url(base_url(register_url), device) if device else None
    files = render(obj, out_dir, site=where, device=device, url=url, lang=lang, installed=installed)
    digest = pol.policy_hash(obj)
    if as_json:
        out = {
            "policy": str(path),
            "hash": digest.hex(),
            "hash4": digest[:4].hex(),
            "site": where,
            "device": device,
            "files": [str(f) for f in files],
        }
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo(f"policy {hash_id(digest)} ({path}): wrote")
        for f in files:
            click.echo(f"  {f}")


@click.group("policy")
def policy_group() -> None:
    """Privacy policies: check a file before provisioning it (docs/privacy.md)."""


@policy_group.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(file: Path, as_json: bool) -> None:
    """Validate a policy FILE and print its hash (the ID every record carries).

    Every reason the policy is refused is listed; the exit code is 2 when there is any.

    \b
    Examples:
      atsource policy check policies/default.json
      atsource policy check my-policy.json --json
    """
    obj = pol.parse_policy(file)
    reasons = pol.validate(obj)
    if reasons:
        if as_json:
            click.echo(json.dumps({"file": str(file), "valid": False, "reasons": reasons}))
        else:
            for r in reasons:
                click.echo(f"{file}: {r}", err=True)
        n = len(reasons)
        raise UserError(f"{file}: policy refused ({n} problem{'s' if n > 1 else ''})")
    digest = pol.policy_hash(obj)
    spend = pol.daily_spend(obj)
    streams = {
        name: {
            "window_s": s["window_s"],
            "release": s["release"],
            **(
                {
                    "k": s["k"],
                    "person_bound": pol.person_bound(name, s),
                    "epsilon_milli_per_window": s["noise"]["epsilon_milli"],
                    "epsilon_milli_per_day": spend[name],
                }
                if name in spend
                else {}
            ),
        }
        for name, s in sorted(obj["streams"].items())
    }
    per_person = pol.daily_per_person(obj) if spend else 0
    if as_json:
        out = {
            "file": str(file),
            "valid": True,
            "name": obj["name"],
            "hash": digest.hex(),
            "hash4": digest[:4].hex(),
            "epsilon_milli_per_person_day": per_person,
            "streams": streams,
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{file}: valid policy {obj['name']!r}")
    click.echo(f"hash {digest.hex()}")
    click.echo(f"records carry {digest[:4].hex()}")
    for name, s in streams.items():
        extra = (
            f", k {s['k']}, one person adds at most {s['person_bound']} a window, epsilon "
            f"{s['epsilon_milli_per_window']}/1000 per person a window, "
            f"{s['epsilon_milli_per_day']}/1000 a day"
            if "k" in s
            else ""
        )
        click.echo(f"  {name}: every {s['window_s']} s: {', '.join(s['release'])}{extra}")
    if not streams:
        click.echo("  no streams: the device collects nothing")
    if spend:
        from .notice import person_text

        click.echo(person_text(obj))
