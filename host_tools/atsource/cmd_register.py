"""`atsource register build|verify`: the public register of sensors and its signed history."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cmd_keys import registry_option
from .errors import UserError

EXIT_REWRITTEN = 5


@click.group("register")
def register_group() -> None:
    """The public register: every sensor, its notice, policy and signed history."""


@register_group.command("build")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("register"),
    show_default=True,
    help="Directory for the static site (replaced if it holds a previous build).",
)
@click.option(
    "--base-url",
    help="Where the site will be published (env ATSOURCE_REGISTER_URL); the notices' QR codes "
    "open each sensor's page there.",
)
@click.option(
    "--lang", default="en", show_default=True, help="Language of the notices: en, de, fr, es."
)
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def register_build(
    out_dir: Path, base_url: str | None, lang: str, registry_path: Path | None, as_json: bool
) -> None:
    """Write the public register as a static site from the operator's signed event log.

    The log is the one `provision`, `keys rotate`, `keys revoke` and `deploy` append to, beside
    the registry; the operator's Ed25519 key signs the head. Any web host can serve the folder.

    \b
    Examples:
      atsource register build --out site/ --base-url https://sensors.example.org/
    """
    from . import eventlog, register
    from .catalogue import load
    from .registry import default_path

    load(lang)
    base = register.base_url(base_url)
    log = eventlog.EventLog.for_registry(registry_path or default_path())
    events = log.events()
    if not events:
        raise UserError(f"no events in {log.path}: provision a sensor first")
    pages = register.build(events, log.key(), out_dir, base, lang)
    fp = eventlog.fingerprint(log.key().public_key())
    if as_json:
        out = {
            "out": str(out_dir),
            "index": str(out_dir / "index.html"),
            "sensors": len(pages),
            "events": len(events),
            "base_url": base,
            "fingerprint": fp,
        }
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(
        f"register: {len(pages)} sensor(s), {len(events)} event(s) in {out_dir / 'index.html'}; "
        f"operator key {fp}"
    )


@register_group.command("verify")
@click.argument("source", metavar="DIR-or-URL")
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The operator's public key (PEM) to trust; default: the one the register publishes "
    "(then compare its fingerprint with the operator's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def register_verify(source: str, key_file: Path | None, as_json: bool) -> None:
    """Check a published register: each event's signature, the hash chain, the order, and the
    signed head. Exit 0 when the history is intact, 5 with one line per rewrite found.

    \b
    Examples:
      atsource register verify site/
      atsource register verify https://sensors.example.org/ --key operator.pub
    """
    from .register import verify

    v = verify(source, key_file.read_bytes() if key_file else None)
    if as_json:
        out = {
            "source": v.source,
            "ok": v.ok,
            "events": v.events,
            "sensors": v.sensors,
            "fingerprint": v.fingerprint,
            "key_pinned": v.pinned,
            "problems": v.problems,
        }
        click.echo(json.dumps(out, indent=2))
    else:
        key = "pinned key" if v.pinned else "published key"
        for p in v.problems:
            click.echo(f"{source}: {p}", err=True)
        verdict = "intact" if v.ok else f"REWRITTEN ({len(v.problems)} problem(s))"
        click.echo(
            f"{source}: {v.events} event(s), {v.sensors} sensor(s), {key} {v.fingerprint}: "
            f"history {verdict}"
        )
    if not v.ok:
        sys.exit(EXIT_REWRITTEN)
