"""The `atsource` command: one entry point for engineers and field technicians.

Exit codes: 0 success; 1 an unexpected internal error; 2 a user mistake (bad option, file,
board name...); 3 the board (real or emulated) failed or did not answer; 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import paths
from .errors import UserError


class Group(click.Group):
    """Turns UserError into one line on stderr and its exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as e:
            # Several problems (a config file's) are one line each.
            for line in str(e).splitlines() or [""]:
                click.echo(f"atsource: error: {line}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("atsource: interrupted", err=True)
            sys.exit(130)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="atsource")
def main() -> None:
    """Privacy-preserving smart-city sensors: boards, firmware, keys and uplinks."""


@main.command()
@click.argument("board", required=False)
@click.option("--scenario", help="Scenario file or name of a shipped one (e.g. plaza).")
@click.option(
    "--flash",
    "flash_dir",
    type=click.Path(path_type=Path),
    help="Host directory holding the board's flash (default: a per-board cache dir).",
)
@click.option("--erase", is_flag=True, help="Start with an empty flash.")
@click.option(
    "--firmware",
    type=click.Path(path_type=Path, file_okay=False),
    help="Install this firmware tree first (default: the repository's firmware/, "
    "except with --serial).",
)
@click.option("--bare", is_flag=True, help="Install nothing: boot what the flash holds.")
@click.option("--source", is_flag=True, help="Install .py sources instead of compiled .mpy.")
@click.option("--serial", is_flag=True, help="Serve the REPL on a pty and a TCP port.")
@click.option(
    "--tcp-port",
    type=int,
    default=0,
    show_default=True,
    help="TCP port for the serial URL (0 picks a free one).",
)
@click.option(
    "--duration",
    help="Simulated time to run, e.g. 24h, 90m (default: the "
    "scenario's; without one, until Ctrl-C).",
)
@click.option("--start", help="Simulated start time, ISO 8601 UTC (default: the scenario's).")
@click.option("--seed", type=int, help="Seed for the world and the board's RNG (reproducible).")
@click.option(
    "--speed",
    type=float,
    help="Simulated seconds per wall second (default: as fast as possible; 1 with --serial).",
)
@click.option(
    "--entry",
    help="'main' runs main.py as a board does; a module name (e.g. sensor.app) "
    "drives its setup()/step() so live heap is measured (default: sensor.app "
    "when installing the repository firmware, else main).",
)
@click.option(
    "--instance",
    default="default",
    show_default=True,
    help="Name of this board instance (its identity and default flash dir).",
)
@click.option(
    "--uplink",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Append frames the board sends over the host link to FILE (hex, one per line).",
)
@click.option("--quiet", is_flag=True, help="Do not print the console.")
@click.option(
    "--fleet",
    type=click.IntRange(min=1),
    help="Run N boards at once (BOARD: one kind, or none for both kinds in turn), in bench "
    "mode, one worker process per core; prints each board's figures and boards x day per "
    "minute (default scenario: residential).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="With --fleet: worker processes (default: one per core).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def emulate(
    board: str | None,
    scenario: str | None,
    flash_dir: Path | None,
    erase: bool,
    firmware: Path | None,
    bare: bool,
    source: bool,
    serial: bool,
    tcp_port: int,
    duration: str | None,
    start: str | None,
    seed: int | None,
    speed: float | None,
    entry: str | None,
    instance: str,
    uplink: Path | None,
    quiet: bool,
    fleet: int | None,
    jobs: int | None,
    as_json: bool,
) -> None:
    """Run an emulated BOARD: the real MicroPython VM running our firmware.

    \b
    Examples:
      atsource emulate pico-w --scenario plaza --duration 24h
      atsource emulate esp32-devkitc --serial        # then: mpremote connect PORT repl
      atsource emulate --fleet 8 --duration 6h       # 8 boards of both kinds at once
    """
    if fleet is not None:
        given = {
            "--flash": flash_dir, "--erase": erase, "--firmware": firmware, "--bare": bare,
            "--source": source, "--serial": serial, "--speed": speed, "--entry": entry,
            "--uplink": uplink, "--start": start,
        }  # fmt: skip
        clash = [k for k, v in given.items() if v]
        if clash:
            raise UserError(f"--fleet runs the repository firmware on fresh flash: drop {clash[0]}")
        _emulate_fleet(board, fleet, jobs, scenario or "residential", duration, seed, as_json)
        return
    if board is None:
        raise UserError("name the BOARD to emulate (esp32-devkitc, pico-w), or use --fleet N")
    if jobs is not None:
        raise UserError("--jobs goes with --fleet")
    from .boards import load_board
    from .emulator.api import (
        default_flash_dir,
        lock_flash,
        make_world,
        parse_start,
        prepare_flash,
    )
    from .emulator.engine import EmulatedBoard, fmt_time, parse_duration
    from .emulator.serialport import SerialBridge

    b = load_board(board)
    start_us = parse_start(start) if start else None
    world = make_world(b, scenario, seed, start_us)
    flash = flash_dir or default_flash_dir(b.name, instance)
    if firmware is None and not bare and not serial:
        firmware = paths.FIRMWARE
    if bare:
        firmware = None
    if entry is None:
        entry = "sensor.app" if firmware == paths.FIRMWARE else "main"

    dur_us: int | None = None
    if duration:
        dur_us = parse_duration(duration)
    elif scenario:
        dur_us = world.end_us - world.start_us

    # With --json, stdout carries the JSON summary alone; the console goes to stderr.
    def show(t_us: int, line: str) -> None:
        if not quiet:
            click.echo(f"{fmt_time(t_us)} | {line}", err=as_json)

    if serial and speed is None:
        speed = 1.0
    on_frame = None
    if uplink is not None:
        from .emulator.api import frame_writer

        on_frame = frame_writer(uplink)
    with lock_flash(flash):  # before --erase: never wipe the flash another emulator runs
        prepare_flash(b, flash, erase=erase, firmware=firmware, mpy=not source)
        emu = EmulatedBoard(
            b,
            flash,
            world=world,
            start_us=start_us,
            seed=seed,
            speed=speed,
            on_line=show,
            instance=instance,
            entry=None if entry == "main" else entry,
            on_frame=on_frame,
        )
        click.echo(f"{b.name}: flash {flash}", err=True)
        try:
            if serial:
                from .boardtime import announce as announce_clock
                from .ports import announce

                bridge = SerialBridge(tcp_port=tcp_port)
                tcp_url = f"socket://127.0.0.1:{bridge.tcp_port}"
                click.echo(f"serial: {bridge.url}", err=as_json)
                click.echo(f"serial: {tcp_url}", err=as_json)
                sys.stdout.flush()
                try:
                    with (
                        announce(b.name, instance, bridge.url, tcp_url),  # atsource ports
                        announce_clock(bridge.urls, flash),  # board time for waits on it
                    ):
                        until = emu.now_us + dur_us if dur_us is not None else None
                        stats = emu.serve(bridge, until_us=until)
                finally:
                    bridge.close()
            else:
                stats = emu.run(duration_us=dur_us)
        except KeyboardInterrupt:
            emu.close()
            raise
    summary = {
        "board": b.name,
        "flash": str(flash),
        "simulated_s": stats.sim_us / 1e6,
        "wall_s": round(stats.wall_s, 3),
        "heap_peak": stats.heap_peak if stats.heap_samples else None,
        "ram_budget": b.ram_budget,
        "resets": [{"t": fmt_time(r.t_us), "kind": r.kind} for r in stats.resets],
        "events": stats.events,
        "frames": stats.frames,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        heap = (
            f"peak heap {stats.heap_peak} of {b.ram_budget} bytes"
            if stats.heap_samples
            else "heap not measured (main.py entry)"
        )
        click.echo(
            f"{b.name}: {summary['simulated_s'] / 3600:.2f} h simulated in "
            f"{summary['wall_s']:.1f} s; {heap}; {len(stats.resets)} boot(s)",
            err=True,
        )


def _emulate_fleet(
    board: str | None,
    n: int,
    jobs: int | None,
    scenario: str,
    duration: str | None,
    seed: int | None,
    as_json: bool,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .boards import board_names, load_board
    from .emulator.api import resolve_scenario
    from .emulator.engine import parse_duration
    from .emulator.fleet import BoardRun, default_workers, members, run_fleet

    kinds = [load_board(board).name] if board else board_names()
    resolve_scenario(scenario)  # a bad name is one line, before any worker starts
    dur_us = parse_duration(duration) if duration else None
    fleet = members(n, kinds, scenario, 1 if seed is None else seed)
    workers = min(jobs or default_workers(), n)
    err = Console(stderr=True)
    if not as_json:
        span = duration or "the scenario's span"
        err.print(
            f"fleet: {n} board(s) ({', '.join(kinds)}), {scenario}, {span}, {workers} in parallel"
        )
    with Progress(
        TextColumn("fleet"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=as_json or not err.is_terminal,
    ) as progress:
        task = progress.add_task("boards", total=n)

        def done(r: BoardRun) -> None:
            progress.advance(task)
            if not as_json:
                what = f"FAILED: {r.error}" if r.error else (
                    f"{r.simulated_s / 3600:.1f} h in {r.wall_s:.1f} s ({r.cpu_s:.1f} CPU-s), "
                    f"peak heap {r.heap_peak} of {r.ram_budget} B, {r.resets} boot(s)"
                )  # fmt: skip
                progress.console.print(
                    f"  #{r.index} {r.board} seed {r.seed}: {what}", soft_wrap=True
                )

        result = run_fleet(fleet, dur_us, workers=workers, on_done=done)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(
            f"fleet: {len(result.boards) - len(result.failed)} of {n} board(s) ran "
            f"{result.board_days:.2f} board-days in {result.wall_s:.1f} s: "
            f"{result.board_days_per_minute:.1f} boards x day per minute"
        )
    if result.failed:
        sys.exit(3)


from .cmd_receive import receive, store_group  # noqa: E402

main.add_command(receive)
main.add_command(store_group)

from .cmd_notice import notice, policy_group  # noqa: E402

main.add_command(notice)
main.add_command(policy_group)

from .cmd_deploy import deploy_cmd  # noqa: E402
from .cmd_flash import flash_cmd  # noqa: E402
from .cmd_keys import devices, keys, registry_group  # noqa: E402
from .cmd_provision import provision_cmd  # noqa: E402

main.add_command(flash_cmd)
main.add_command(deploy_cmd)
main.add_command(provision_cmd)
main.add_command(devices)
main.add_command(keys)
main.add_command(registry_group)

from .cmd_ports import ports_cmd  # noqa: E402

main.add_command(ports_cmd)

from .cmd_register import register_group  # noqa: E402

main.add_command(register_group)

from .cmd_demo import demo  # noqa: E402

main.add_command(demo)

if __name__ == "__main__":
    main()
