"""`atsource ports`: the boards a command with `--port auto` would find."""

from __future__ import annotations

import json

import click

PORT_HELP = (
    "Serial port: /dev/ttyACM0, a pty, socket://...; 'auto' (the default) picks the one board "
    "attached or emulated here (atsource ports)."
)


@click.command("ports")
@click.option("--json", "as_json", is_flag=True, help="Print the boards as JSON.")
def ports_cmd(as_json: bool) -> None:
    """List attached boards (USB ids of boards/*.json) and emulated boards served here.

    A board in its USB bootloader (a Pico holding BOOTSEL) is listed as `bootsel`: only
    `atsource flash` can use it. Every command that takes --port uses the one board listed
    when --port is `auto` (the default).

    \b
    Examples:
      atsource ports
      atsource ports --json
    """
    from .ports import all_ports

    found = all_ports()
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in found], indent=2))
        return
    if not found:
        click.echo("no boards found (plug one in, or start `atsource emulate BOARD --serial`)")
        return
    for p in found:
        extra = f"  {p.url}" if p.url else ""
        click.echo(f"{p.port}  {p.kind}  {p.board or '?'}  {p.detail}{extra}")
