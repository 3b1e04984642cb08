"""`atsource devices list` and `atsource keys list|rotate|revoke`: the registry's view."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import UserError
from .paths import REGISTRY_ENV as PATH_ENV

if TYPE_CHECKING:  # imported when a command runs: `atsource --help` stays fast
    from rich.console import Console

    from .registry import Registry

F = TypeVar("F", bound=Callable[..., Any])


def registry_option(f: F) -> F:
    """--registry PATH (env ATSOURCE_REGISTRY; default ~/.local/share/atsource/registry.db)."""
    return click.option(
        "--registry",
        "registry_path",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar=PATH_ENV,
        help=f"Registry database (default: ${PATH_ENV} or ~/.local/share/atsource/registry.db).",
    )(f)


def open_registry(path: Path | None) -> Registry:
    from .registry import Registry

    return Registry.open(path)


def parse_device(text: str) -> int:
    """A device as `dev-000007` or `7`."""
    m = re.fullmatch(r"(?:dev-)?0*(\d+)", text.strip())
    if not m or int(m.group(1)) >= 1 << 32:
        raise UserError(f"bad device '{text}': give its number or name (e.g. 7 or dev-000007)")
    return int(m.group(1))


def parse_grace(text: str) -> float:
    """7d, 12h, 30m, 90s or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", text)
    if not m:
        raise UserError(f"bad grace period '{text}': e.g. 7d, 12h, 30m or 0")
    mult = {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}[m.group(2)]
    return float(m.group(1)) * mult


def _console() -> Console:
    from rich.console import Console

    # Piped output keeps whole table cells rather than rich's 80-column default.
    con = Console()
    return con if con.is_terminal else Console(width=200)


def _when(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- devices ---------------------------------------------------------------------------------


@click.group("devices")
def devices() -> None:
    """Devices in the registry."""


@devices.command("list")
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def devices_list(registry_path: Path | None, as_json: bool) -> None:
    """List provisioned devices: number, site, board, state, key generation, last verification.

    \b
    Example:
      atsource devices list --json
    """
    with open_registry(registry_path) as reg:
        rows = reg.devices()
    data = [
        {
            "device": r.name,
            "number": r.number,
            "site": r.site,
            "board": r.board,
            "state": r.state,
            "generation": r.generation,
            "board_ref": r.board_ref,
            "policy_hash": r.policy_hash,
            "provisioned": _when(r.provisioned),
            "verified": _when(r.verified),
            "verified_piv": r.verified_piv,
        }
        for r in rows
    ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    if not data:
        click.echo("no devices in the registry (provision one: atsource provision --help)")
        return
    from rich.table import Table

    t = Table("device", "site", "board", "state", "gen", "policy", "verified", "board ref")
    for d in data:
        t.add_row(
            d["device"],
            d["site"],
            d["board"],
            d["state"],
            str(d["generation"] or "-"),
            d["policy_hash"] or "-",
            (f"{d['verified']} (frame {d['verified_piv']})" if d["verified"] else "-"),
            d["board_ref"],
        )
    _console().print(t)


# ---- keys ------------------------------------------------------------------------------------


@click.group("keys")
def keys() -> None:
    """Key generations: list, rotate (grace period for the old key), revoke (immediate)."""


@keys.command("list")
@click.argument("device", required=False)
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON.")
def keys_list(device: str | None, registry_path: Path | None, as_json: bool) -> None:
    """List key generations (kid, state, grace period); never the keys themselves.

    \b
    Examples:
      atsource keys list
      atsource keys list dev-000007 --json
    """
    number = parse_device(device) if device else None
    with open_registry(registry_path) as reg:
        rows = reg.keys(number)
    data = [
        {
            "device": f"dev-{k.device:06d}",
            "generation": k.generation,
            "kid": k.kid.hex(),
            "state": k.effective_state(),
            "created": _when(k.created),
            "valid_until": _when(k.valid_until),
            "revoked_at": _when(k.revoked_at),
        }
        for k in rows
    ]
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    from rich.table import Table

    t = Table("device", "gen", "kid", "state", "created", "valid until / revoked")
    for d in data:
        t.add_row(
            d["device"],
            str(d["generation"]),
            d["kid"],
            d["state"],
            d["created"],
            d["revoked_at"] or d["valid_until"] or "",
        )
    _console().print(t)


@keys.command("rotate")
@click.argument("device")
@click.option("--port", "-p", required=True, help="Serial port of the device's board.")
@click.option(
    "--grace",
    default="7d",
    show_default=True,
    help="How long the old key stays valid (frames still queued on the board): 7d, 12h, 0.",
)
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def keys_rotate(
    device: str, port: str, grace: str, registry_path: Path | None, as_json: bool
) -> None:
    """Give DEVICE a new key generation, provisioned to its board over --port.

    The new key is written to the board atomically and verified with a sealed frame before the
    registry switches; the old generation stays valid for the grace period, then the receiver
    refuses it.

    \b
    Example:
      atsource keys rotate dev-000007 --port /dev/ttyACM0 --grace 2d
    """
    from .provision import DEFAULT_GRACE_S, rotate

    number = parse_device(device)
    grace_s = parse_grace(grace) if grace else DEFAULT_GRACE_S
    with open_registry(registry_path) as reg:
        r = rotate(port, number, registry=reg, grace_s=grace_s)
    if as_json:
        d = r.as_dict()
        d["old_valid_until"] = _when(r.old_valid_until)
        click.echo(json.dumps(d, indent=2))
        return
    until = _when(r.old_valid_until) or "now"
    click.echo(
        f"{r.device}: key generation {r.generation} (kid {r.kid}) active and verified; "
        f"kid {r.old_kid} valid until {until}"
    )


@keys.command("revoke")
@click.argument("device")
@click.option("--generation", type=int, help="Revoke only this generation (default: all).")
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def keys_revoke(
    device: str, generation: int | None, registry_path: Path | None, as_json: bool
) -> None:
    """Revoke DEVICE's keys now: the receiver refuses its frames from the next one on.

    Without --generation every generation is revoked and the device is retired (a lost or
    captured sensor); provision the board again with --force to bring it back.

    \b
    Examples:
      atsource keys revoke dev-000007
      atsource keys revoke 7 --generation 1
    """
    number = parse_device(device)
    with open_registry(registry_path) as reg:
        kids = reg.revoke(number, generation)
    if as_json:
        click.echo(json.dumps({"device": f"dev-{number:06d}", "revoked": [k.hex() for k in kids]}))
        return
    if not kids:
        click.echo(f"dev-{number:06d}: nothing left to revoke")
    for k in kids:
        click.echo(f"dev-{number:06d}: revoked kid {k.hex()}")
