"""`atsource demo`: the main job on an emulated fleet (host_tools/atsource/demo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-report"),
    show_default=True,
    help="Directory for the report, registry, readings database and notices.",
)
@click.option(
    "--mqtt",
    help="The boards' own MQTT clients publish to this broker (mqtt://host:port/topic, or "
    "mqtts:// for TLS; a loopback address: emulated boards reach only this machine), and the "
    "receiver takes the frames from it.",
)
@click.option(
    "--mqtt-ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA certificate of an mqtts:// broker (given to the boards and the receiver).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(out: Path, mqtt: str | None, mqtt_ca: Path | None, as_json: bool) -> None:
    """Run an emulated fleet for a simulated day and write a report.

    Deploys and provisions four emulated boards through their serial ports, runs a day of
    their scenarios, receives and verifies every frame, audits every byte the boards emitted
    for the crowd's identifiers, and writes DIR/report.html.

    Example: atsource demo --out /tmp/demo
    """
    from .demo import run_demo

    say = (lambda _s: None) if as_json else (lambda s: click.echo(s, err=True))
    summary = run_demo(out, mqtt=mqtt, mqtt_ca=mqtt_ca, say=say)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo("")
    click.echo(
        f"{'device':12} {'board':14} {'scenario':12} {'sent':>6} {'stored':>6} {'missing':>7}"
    )
    for d in summary["devices"]:
        click.echo(
            f"{d['device']:12} {d['board']:14} {d['scenario']:12} {d['frames_sent']:>6} "
            f"{d['frames_stored']:>6} {d['missing']:>7}"
        )
    click.echo(summary["audit"]["summary"])
    click.echo(f"report: {summary['report']}  ({summary['seconds']} s)")
