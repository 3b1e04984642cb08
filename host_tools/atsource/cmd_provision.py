"""`atsource provision`: identity, keys, config and policy onto one board or a batch."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .cmd_keys import open_registry, registry_option
from .errors import UserError

if TYPE_CHECKING:  # imported when the command runs: `atsource --help` stays fast
    from rich.progress import TaskID

    from .provision import ProvisionResult


def _summary(r: ProvisionResult) -> str:
    extra = f" ({r.recovered} an interrupted run)" if r.recovered else ""
    lines = [
        f"{r.device} provisioned{extra}: site {r.site}"
        + (f" ({r.place})" if r.place else "")
        + f", board {r.board} on {r.port}",
        f"  kid {r.kid} (generation {r.generation}), policy {r.policy_hash or 'none'}",
        f"  verified: the board sealed a {r.frame_bytes}-byte self-test frame (counter "
        f"{r.verified_piv}) and it opened with the registry's key",
    ]
    if r.notice:
        lines.append(f"  notice: {r.notice[0]}")
    lines.extend(f"  warning: {w}" for w in r.warnings)
    return "\n".join(lines)


@click.command("provision")
@click.option(
    "--port",
    "-p",
    "ports",
    multiple=True,
    help="Serial port of the board (repeat with --batch to add ports); without one, or with "
    "'auto', the one board attached or emulated here (atsource ports).",
)
@click.option("--site", required=True, help="Site name, e.g. plaza-north.")
@click.option(
    "--policy",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Privacy policy file (default: policies/default.json).",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    help="JSON with config.json settings (wifi, uplink, sensors; docs/device.md).",
)
@click.option("--force", is_flag=True, help="Re-provision a provisioned board (old keys revoked).")
@click.option("--batch", is_flag=True, help="Provision every attached board in parallel.")
@click.option(
    "--notice-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where each device's notice (HTML, PNG) is written (default: notices/ beside the "
    "registry).",
)
@click.option(
    "--db",
    metavar="PATH|URL",
    help="Readings store whose device numbers a new device must not reuse: a SQLite file, "
    "if it exists here, or postgresql://user@host/db (default: $ATSOURCE_DB, else "
    "~/.local/share/atsource/readings.db).",
)
@click.option(
    "--place",
    help='Where the sensor is, as people say it ("Plaza South, by the fountain"): on the '
    "notice and in the public register.",
)
@click.option(
    "--location",
    help="LAT,LON of the sensor; the public register shows it only rounded to the policy's "
    "grid (location.coarsen_m), and the exact point is kept nowhere.",
)
@click.option(
    "--lang", default="en", show_default=True, help="Language of the notice: en, de, fr, es."
)
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the result(s) as JSON.")
def provision_cmd(
    ports: tuple[str, ...],
    site: str,
    policy: Path | None,
    config: Path | None,
    force: bool,
    batch: bool,
    notice_dir: Path | None,
    db: str | None,
    place: str | None,
    location: str | None,
    lang: str,
    registry_path: Path | None,
    as_json: bool,
) -> None:
    """Provision a board: device number, keys, config and policy, verified by a sealed frame.

    The board must run the deployed firmware (atsource deploy). Secrets are drawn on the host
    and kept encrypted in the registry; only the derived key, context IV and RNG seed go to the
    board. A provisioned board is refused without --force. An interrupted run (cable pulled,
    power cut) is finished by running the same command again.

    \b
    Examples:
      atsource provision --port /dev/ttyACM0 --site plaza-north
      atsource provision --batch --site depot --policy policies/strict.json
    """
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .provision import batch_ports, load_config, provision, provision_batch

    load_config(config)  # a bad config is refused before any port or the registry is opened
    from .catalogue import load
    from .provision import check_place
    from .register import parse_location

    load(lang)  # an unknown language is refused before any board is touched
    place = check_place(place)
    loc = parse_location(location) if location else None
    if batch and loc is not None:
        raise UserError("--location names one sensor's position: not with --batch")
    from .store import default_db

    store = db or default_db()
    if not batch:
        if len(ports) > 1:
            raise UserError("name one board with --port (or use --batch for several)")
        from .ports import resolve

        ports = (resolve(ports[0] if ports else None),)
        err = Console(stderr=True)
        show = err.is_terminal and not as_json
        with (
            open_registry(registry_path, create=True) as reg,
            err.status("connecting", spinner="dots") if show else nullcontext() as status,
        ):

            def stage(text: str) -> None:
                if status is not None:
                    status.update(f"{ports[0]}: {text}")

            res = provision(
                ports[0],
                site,
                registry=reg,
                policy=policy,
                config=config,
                force=force,
                notice_dir=notice_dir or reg.path.parent / "notices",
                stage=stage,
                place=place,
                location=loc,
                lang=lang,
                store=store,
            )
        click.echo(json.dumps(res.as_dict(), indent=2) if as_json else _summary(res))
        return

    targets = batch_ports(ports)
    err = Console(stderr=True)
    with (
        open_registry(registry_path, create=True) as reg,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            disable=as_json or not err.is_terminal,
        ) as progress,
    ):
        tasks: dict[str, TaskID] = {p: progress.add_task(f"{p}: waiting", total=1) for p in targets}

        def on_stage(port: str, text: str) -> None:
            done = text == "done" or text.startswith("failed")
            progress.update(tasks[port], description=f"{port}: {text}", completed=int(done))
            if done and not err.is_terminal and not as_json:
                err.print(f"{port}: {text}", soft_wrap=True)

        items = provision_batch(
            targets,
            site,
            registry=reg,
            policy=policy,
            config=config,
            force=force,
            notice_dir=notice_dir or reg.path.parent / "notices",
            on_stage=on_stage,
            place=place,
            lang=lang,
            store=store,
        )
    if as_json:
        out = [
            {
                "port": i.port,
                "ok": i.result is not None,
                "error": i.error,
                "result": i.result.as_dict() if i.result else None,
            }
            for i in items
        ]
        click.echo(json.dumps(out, indent=2))
    else:
        for i in items:
            if i.result:
                click.echo(_summary(i.result))
            else:
                click.echo(f"{i.port}: FAILED: {i.error}", err=True)
        ok = sum(1 for i in items if i.result)
        click.echo(f"{ok} of {len(items)} board(s) provisioned")
    worst = max((i.exit_code for i in items), default=0)
    if worst:
        sys.exit(worst)
