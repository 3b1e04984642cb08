"""`atsource flash`: put MicroPython itself on a board (esptool for ESP32, UF2 for the Pico)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .paths import UF2_DIR_ENV


@click.command("flash")
@click.option(
    "--port",
    "-p",
    help="Serial port of the board; default or 'auto': the one board found by its USB ids "
    "(optional for a Pico in BOOTSEL).",
)
@click.option(
    "--firmware",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="MicroPython image: .bin for ESP32, .uf2 for the Pico W.",
)
@click.option("--board", help="Board definition (default: detected from the port's USB ids).")
@click.option("--erase", is_flag=True, help="ESP32: erase the whole flash first (files too).")
@click.option(
    "--uf2-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar=UF2_DIR_ENV,
    help=f"The Pico's mounted bootloader drive (default: found by INFO_UF2.TXT; ${UF2_DIR_ENV}).",
)
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Pico: seconds to wait for the serial port to come back (0: do not wait).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def flash_cmd(
    port: str | None,
    firmware: Path,
    board: str | None,
    erase: bool,
    uf2_dir: Path | None,
    wait_s: float,
    as_json: bool,
) -> None:
    """Flash MicroPython (a file you name) onto a board.

    The image is checked first (it exists; an ESP32 image names the board's chip; every UF2
    block names the RP2040 family), so a wrong file is refused before anything is erased.

    \b
    Examples:
      atsource flash --port /dev/ttyUSB0 --firmware ESP32_GENERIC-v1.29.0.bin --erase
      atsource flash --port /dev/ttyACM0 --firmware RPI_PICO_W-v1.29.0.uf2
    """
    from .flash import flash
    from .progress import byte_progress

    with byte_progress(as_json) as progress:
        task = progress.add_task("preparing", total=None)

        def say(text: str) -> None:
            progress.update(task, description=text)
            if not as_json and progress.console.is_terminal:
                progress.console.print(f"[dim]{text}[/dim]")

        def bar(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = flash(
            port,
            firmware,
            board=board,
            erase=erase,
            uf2_dir=uf2_dir,
            progress=bar,
            say=say,
            port_timeout=wait_s,
        )
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    back = f"; MicroPython is back on {result.port}" if result.port else ""
    click.echo(
        f"{result.board}: flashed {firmware.name} ({result.bytes} bytes) with "
        f"{result.method} in {result.seconds:.1f} s{back}"
    )
