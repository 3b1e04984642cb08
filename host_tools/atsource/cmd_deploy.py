"""`atsource deploy`: compile the firmware and copy only what changed to a board."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .cmd_keys import registry_option
from .cmd_ports import PORT_HELP

if TYPE_CHECKING:  # imported when the command runs: `atsource --help` stays fast
    from rich.progress import Progress, TaskID

    from .deploy import DeployResult


class _Bar:
    """deploy.Reporter drawn as one rich progress bar (bytes) naming the current file."""

    def __init__(self, progress: Progress) -> None:
        self.p = progress
        self.task: TaskID | None = None

    def start(self, total_bytes: int, files: int) -> None:
        self.task = self.p.add_task(f"{files} file(s)", total=max(total_bytes, 1))

    def file(self, path: str) -> None:
        if self.task is not None:
            self.p.update(self.task, description=path)

    def advance(self, nbytes: int) -> None:
        if self.task is not None:
            self.p.advance(self.task, nbytes)


def _record(r: DeployResult, registry_path: Path | None) -> None:
    """A firmware change on a provisioned board is an event of the public register."""
    if r.kid is None or r.dry_run:
        return
    from .eventlog import EventLog
    from .keys import split_kid
    from .registry import default_path, device_name

    log = EventLog.for_registry(registry_path or default_path())
    name = device_name(split_kid(bytes.fromhex(r.kid))[0])
    if log.last(name, "provisioned") is None:
        return  # provisioned by another operator's registry, or never: not ours to record
    log.append(
        "firmware_updated",
        name,
        {
            "board": r.board,
            "manifest_sha256": r.manifest_sha256,
            "files": len(r.copied) + len(r.removed),
            "kid": r.kid,
        },
    )


def _summary(r: DeployResult) -> str:
    verb = "would copy" if r.dry_run else "copied"
    return (
        f"{r.board} on {r.port}: {verb} {len(r.copied)} file(s) ({r.bytes_copied} bytes), "
        f"removed {len(r.removed)}, {r.unchanged} unchanged, {r.seconds:.1f} s"
    )


@click.command("deploy")
@click.option("--port", "-p", default="auto", show_default=True, help=PORT_HELP)
@click.option("--board", help="Board definition (default: detected from the port or the board).")
@click.option(
    "--firmware",
    "src",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Firmware tree to deploy (default: the repository's firmware/).",
)
@click.option("--dry-run", is_flag=True, help="Show the plan; change nothing on the board.")
@click.option(
    "--reset/--no-reset",
    default=True,
    show_default=True,
    help="Soft-reset the board afterwards (when something changed) so the new firmware runs.",
)
@registry_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def deploy_cmd(
    port: str,
    board: str | None,
    src: Path | None,
    dry_run: bool,
    reset: bool,
    registry_path: Path | None,
    as_json: bool,
) -> None:
    """Compile firmware/ with mpy-cross and copy only the files that changed.

    Hashes on the board are compared with the build; files the previous deploy put there and
    this one does not are removed; /manifest.json is written last. Data files (identity,
    config, policy, counter, outbox) are never touched.

    \b
    Examples:
      atsource deploy --port /dev/ttyACM0
      atsource deploy --port /dev/pts/5 --dry-run
    """
    from .deploy import deploy
    from .ports import resolve
    from .progress import byte_progress

    port = resolve(port)
    with byte_progress(as_json) as progress:
        result = deploy(
            port, board=board, src=src, dry_run=dry_run, reset=reset, reporter=_Bar(progress)
        )
    _record(result, registry_path)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    if dry_run:
        for p in result.copied:
            click.echo(f"copy   {p}")
        for p in result.removed:
            click.echo(f"remove {p}")
    click.echo(_summary(result))
