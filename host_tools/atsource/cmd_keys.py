"""`atsource devices list` and `atsource keys list|rotate|revoke`: the registry's view."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .cmd_ports import PORT_HELP
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


def open_registry(path: Path | None, *, create: bool = False) -> Registry:
    """The registry; only provisioning creates one (a read never makes a file or a key)."""
    from .registry import Registry

    return Registry.open(path, create=create)


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


# Exit status of `devices list --stale` when a device is stale (as `receive --count`: the
# data expected did not arrive).
EXIT_STALE = 4


def _health(db: str | None, kid_device: dict[bytes, int]) -> dict[int, dict[str, Any]]:
    """Per device number: what the readings store says (all key generations together)."""
    from .store import default_db, is_postgres_url, open_store

    spec = db or default_db()
    if not is_postgres_url(spec) and not Path(spec).expanduser().exists():
        return {}  # no store yet: nothing received (and do not create one)
    with open_store(spec) as store:
        rows = store.health()
    out: dict[int, dict[str, Any]] = {}
    for kid, h in rows.items():
        number = kid_device.get(kid)
        if number is None:
            continue
        d = out.setdefault(
            number,
            {"last": None, "highest": -1, "end": None, "length": None, "policy": None,
             "firmware": None, "accepted": 0, "rejected": {}},
        )  # fmt: skip
        d["accepted"] += h.accepted
        for reason, n in h.rejected.items():
            d["rejected"][reason] = d["rejected"].get(reason, 0) + n
        if h.last_accepted is not None and (d["last"] is None or h.last_accepted >= d["last"]):
            d["last"], d["highest"] = h.last_accepted, h.highest
            d["firmware"] = h.firmware or d["firmware"]
        if h.last_window_end is not None and (d["end"] is None or h.last_window_end >= d["end"]):
            d["end"], d["length"] = h.last_window_end, h.last_window_length
            d["policy"] = h.policy.hex() if h.policy else d["policy"]
    return out


@devices.command("list")
@registry_option
@click.option(
    "--db",
    metavar="PATH|URL",
    help="Readings store to read health from (default: $ATSOURCE_DB, else the per-user file).",
)
@click.option(
    "--stale",
    metavar="DURATION",
    help="Only devices with no verified frame for this long (e.g. 2h, 1d); exit 4 if any.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the devices as JSON.")
def devices_list(
    registry_path: Path | None, db: str | None, stale: str | None, as_json: bool
) -> None:
    """List devices: site, board, state, key generation, policy, and their health from the
    readings store: last verified frame, windows missing since, rejects by reason, policy in
    force, firmware version (once reported).

    A window is missing when the end of the newest window received is more than one window
    length ago. With --stale D only devices whose last verified frame is older than D (or that
    never sent one) are listed, and the exit status is 4 when there is any: a monitoring job
    can run `atsource devices list --stale 2h --json`.

    \b
    Examples:
      atsource devices list
      atsource devices list --json
      atsource devices list --stale 1h || alert "sensors went quiet"
    """
    import time

    stale_s = None
    if stale is not None:
        try:
            stale_s = parse_grace(stale)
        except UserError:
            raise UserError(f"bad --stale '{stale}': e.g. 2h, 30m or 1d") from None
    with open_registry(registry_path) as reg:
        rows = reg.devices()
        kid_device = {k.kid: k.device for k in reg.keys(None)}
    health = _health(db, kid_device)
    now = time.time()
    data = []
    for r in rows:
        h = health.get(r.number, {})
        last, end, length = h.get("last"), h.get("end"), h.get("length")
        missing = end is not None and length is not None and now > end + length
        item = {
            "device": r.name,
            "number": r.number,
            "site": r.site,
            "board": r.board,
            "state": r.state,
            "generation": r.generation,
            "board_ref": r.board_ref,
            "policy_hash": r.policy_hash,
            "policy_in_force": h.get("policy"),
            "provisioned": _when(r.provisioned),
            "verified": _when(r.verified),
            "verified_piv": r.verified_piv,
            "last_frame": _when(last),
            "last_frame_age_s": None if last is None else round(now - last, 1),
            "last_piv": h.get("highest") if last is not None else None,
            "frames_accepted": h.get("accepted", 0),
            "windows_missing_since": _when(end) if missing else None,
            "rejected": dict(sorted(h.get("rejected", {}).items())),
            "firmware": h.get("firmware"),
        }
        if stale_s is not None:
            item["stale"] = last is None or now - last > stale_s
            if not item["stale"]:
                continue
        data.append(item)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    elif not data:
        click.echo(
            "no stale devices"
            if stale_s is not None
            else "no devices in the registry (provision one: atsource provision --help)"
        )
    else:
        from rich.table import Table

        t = Table(
            "device", "site", "board", "state", "gen", "policy", "last frame", "missing since",
            "rejects", "firmware",
        )  # fmt: skip
        for d in data:
            pol = d["policy_in_force"] or d["policy_hash"] or "-"
            if (
                d["policy_in_force"]
                and d["policy_hash"]
                and d["policy_in_force"] != d["policy_hash"]
            ):
                pol = f"{d['policy_in_force']} (registry {d['policy_hash']})"
            t.add_row(
                d["device"],
                d["site"],
                d["board"],
                d["state"],
                str(d["generation"] or "-"),
                pol,
                f"{d['last_frame']} (piv {d['last_piv']})" if d["last_frame"] else "never",
                d["windows_missing_since"] or "-",
                " ".join(f"{k}={v}" for k, v in d["rejected"].items()) or "-",
                d["firmware"] or "-",
            )
        _console().print(t)
    if stale_s is not None and data:
        sys.exit(EXIT_STALE)


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
@click.option("--port", "-p", default="auto", show_default=True, help=PORT_HELP)
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
    from .ports import resolve

    port = resolve(port)
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
        if kids:
            from .eventlog import EventLog

            log = EventLog.for_registry(reg.path)
            name = f"dev-{number:06d}"
            log.append("key_revoked", name, {"kids": [k.hex() for k in kids]})
            if generation is None:
                log.append("retired", name, {})
    if as_json:
        click.echo(json.dumps({"device": f"dev-{number:06d}", "revoked": [k.hex() for k in kids]}))
        return
    if not kids:
        click.echo(f"dev-{number:06d}: nothing left to revoke")
    for k in kids:
        click.echo(f"dev-{number:06d}: revoked kid {k.hex()}")


# ---- registry backup and restore -----------------------------------------------------------


@click.group("registry")
def registry_group() -> None:
    """The registry file itself: backup and restore (secrets stay encrypted)."""


@registry_group.command("backup")
@click.argument("dest", type=click.Path(path_type=Path, dir_okay=False))
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def registry_backup(dest: Path, registry_path: Path | None, as_json: bool) -> None:
    """Copy the registry to DEST (a new file, mode 0600), consistent even while in use.

    The secrets in the copy stay encrypted under the registry key, and the key is not in the
    copy: keep the key file apart from the backups (both are needed to restore).

    \b
    Example:
      atsource registry backup /media/backup/registry-$(date +%F).db
    """
    from .registry import backup

    with open_registry(registry_path) as reg:
        n = backup(reg, dest)
        src = reg.path
    if as_json:
        click.echo(json.dumps({"registry": str(src), "backup": str(dest), "devices": n}))
        return
    click.echo(f"registry {src}: {n} device(s) backed up to {dest}")


@registry_group.command("restore")
@click.argument("src", type=click.Path(path_type=Path, dir_okay=False))
@registry_option
@click.option("--force", is_flag=True, help="Replace a registry that still works.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def registry_restore(src: Path, registry_path: Path | None, force: bool, as_json: bool) -> None:
    """Put the backup SRC in place of the registry (stop other atsource processes first).

    The backup must be a whole atsource registry whose every secret decrypts with this
    registry's key. A damaged or empty registry file is kept beside it (.damaged-TIME); a
    working one is replaced only with --force (kept as .replaced-TIME).

    \b
    Example:
      atsource registry restore /media/backup/registry-2026-11-30.db
    """
    from .registry import default_path, restore

    path = registry_path or default_path()
    n, kept = restore(src, path, force=force)
    if as_json:
        out = {"registry": str(path), "backup": str(src), "devices": n, "kept": str(kept or "")}
        click.echo(json.dumps(out))
        return
    click.echo(f"registry {path}: restored from {src} ({n} device(s))")
    if kept is not None:
        click.echo(f"  the previous file is kept as {kept}")
    click.echo(
        "  devices provisioned after that backup are not in it: provision them again with "
        "--force, where the readings store is reachable (--db), so no number is issued twice"
    )
