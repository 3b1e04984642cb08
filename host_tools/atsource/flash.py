"""`atsource flash`: put MicroPython itself on a board.

ESP32 (board ``firmware_format`` "bin"): esptool's Python API (esptool 5): detect the chip,
load the stub, erase when asked, write the image at the board definition's offset, verify,
hard-reset. Pico W ("uf2"): enter the USB bootloader (``machine.bootloader()`` over the REPL,
or the user holds BOOTSEL while plugging in), find the UF2 drive by its ``INFO_UF2.TXT``, copy
the ``.uf2``, wait for the MicroPython port to come back.

Every check on the image (the file exists; an ESP image header naming the board's chip; a UF2
whose every block names the board's family) runs before the board is touched, so a wrong file
never costs an erased board.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .boards import Board, board_names, load_board
from .device import Device, check_port_exists, list_boards, usb_board
from .errors import DeviceError, UserError
from .paths import UF2_DIR_ENV

UF2_MAGIC0 = 0x0A324655
UF2_MAGIC1 = 0x9E5D5157
UF2_MAGIC_END = 0x0AB16F30
UF2_FLAG_FAMILY = 0x2000
UF2_FAMILIES = {
    0xE48BFF56: "RP2040",
    0xE48BFF57: "RP2XXX_ABSOLUTE",
    0xE48BFF58: "RP2XXX_DATA",
    0xE48BFF59: "RP2350-ARM-S",
    0xE48BFF5A: "RP2350-RISCV",
    0xE48BFF5B: "RP2350-ARM-NS",
    0xBFDD4EEE: "ESP32-S2",
    0xC47E5767: "ESP32-S3",
    0xD42BA06C: "ESP32-C3",
    0x1C5F21B0: "ESP32",
}
CHIP_FAMILY = {"RP2040": 0xE48BFF56}
# INFO_UF2.TXT "Board-ID:" prefix of each chip's boot ROM.
CHIP_BOOT_ID = {"RP2040": "RPI-RP2", "RP2350": "RP2350"}
ESP_IMAGE_MAGIC = 0xE9

Progress = Callable[[int, int], None]  # (done, total) bytes
Say = Callable[[str], None]


@dataclass
class FlashResult:
    board: str
    port: str | None
    firmware: str
    bytes: int
    method: str  # "esptool" or "uf2"
    erased: bool
    seconds: float
    target: str | None = None  # the UF2 drive

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---- image checks (no board involved) ------------------------------------------------------


def read_image(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"firmware image not found: {path}")
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path}: empty firmware image")
    return data


def esp_chip_names() -> dict[int, str]:
    from esptool.targets import CHIP_DEFS

    return {
        int(cls.IMAGE_CHIP_ID): cls.CHIP_NAME
        for cls in CHIP_DEFS.values()
        if getattr(cls, "IMAGE_CHIP_ID", None) is not None
    }


def _esp_class(chip: str) -> Any:
    from esptool.targets import CHIP_DEFS

    key = chip.lower().replace("-", "")
    if key not in CHIP_DEFS:
        raise UserError(f"esptool does not know the chip {chip}")
    return CHIP_DEFS[key]


def check_esp_image(data: bytes, board: Board, name: str = "image") -> None:
    """An ESP image starts with 0xE9 and, in its extended header (byte 12, little-endian),
    names the chip it was built for."""
    if data[:4] == struct.pack("<I", UF2_MAGIC0):
        raise UserError(f"{name} is a UF2 file; {board.name} takes a .bin image (esptool)")
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise UserError(f"{name} is not an ESP firmware image (no 0xE9 header)")
    chip_id = struct.unpack_from("<H", data, 12)[0]
    want = int(_esp_class(board.chip).IMAGE_CHIP_ID)
    if chip_id != want:
        other = esp_chip_names().get(chip_id, f"chip id {chip_id}")
        raise UserError(f"{name} is built for {other}, but {board.name} is an {board.chip}")


def check_uf2(data: bytes, board: Board, name: str = "image") -> int:
    """Every 512-byte block must be a UF2 block for the board's family; returns the blocks."""
    want = CHIP_FAMILY.get(board.chip)
    if want is None:
        raise UserError(f"no UF2 family known for {board.chip}")
    if len(data) % 512 or not data:
        raise UserError(f"{name} is not a UF2 file (size is not a multiple of 512 bytes)")
    n = len(data) // 512
    for i in range(n):
        off = i * 512
        m0, m1, flags = struct.unpack_from("<III", data, off)
        (family,) = struct.unpack_from("<I", data, off + 28)
        (end,) = struct.unpack_from("<I", data, off + 508)
        if m0 != UF2_MAGIC0 or m1 != UF2_MAGIC1 or end != UF2_MAGIC_END:
            raise UserError(f"{name} is not a UF2 file (bad magic in block {i})")
        if not flags & UF2_FLAG_FAMILY or family != want:
            what = UF2_FAMILIES.get(family, f"family 0x{family:08x}")
            if not flags & UF2_FLAG_FAMILY:
                what = "no family id"
            raise UserError(
                f"{name} is a UF2 for {what}, but {board.name} is an {board.chip} "
                f"(family 0x{want:08x})"
            )
    return n


def check_image(data: bytes, board: Board, name: str) -> None:
    if board.firmware_format == "uf2":
        check_uf2(data, board, name)
    elif board.firmware_format == "bin":
        check_esp_image(data, board, name)
    else:
        raise UserError(f"{board.name}: unknown firmware format {board.firmware_format}")


# ---- which board --------------------------------------------------------------------------


def resolve_board(board: str | None, port: str | None) -> Board:
    if board:
        return load_board(board)
    if port:
        if not any(p.bootsel for p in list_boards()):  # a Pico in BOOTSEL has no port
            check_port_exists(port)  # "no such port", not "cannot tell which board"
        name = usb_board(port)
        if name:
            return load_board(name)
        with contextlib.suppress(DeviceError), Device(port, retries=1, timeout=3) as dev:
            return dev.detect_board()
    elif len({p.board for p in list_boards()}) == 1:
        return load_board(list_boards()[0].board or "")
    raise UserError(
        f"cannot tell which board is on {port or 'USB'}: name it with --board "
        f"({', '.join(board_names())})"
    )


# ---- ESP32 through esptool ----------------------------------------------------------------


@contextlib.contextmanager
def _esptool_progress(progress: Progress | None, say: Say | None) -> Iterator[None]:
    """Route esptool's log and progress bars to our callbacks for the duration."""
    from esp_pylib.logger import EspLog
    from esptool.logger import TemplateLogger, log

    class _Log(TemplateLogger):
        def print(self, *args: Any, **kwargs: Any) -> None:
            pass

        def note(self, message: str) -> None:
            pass

        def warning(self, message: str) -> None:
            if say:
                say(f"esptool: {message}")

        def error(self, message: str) -> None:
            if say:
                say(f"esptool: {message}")

        def stage(self, finish: bool = False) -> None:
            pass

        def progress_bar(
            self,
            cur_iter: int,
            total_iters: int,
            prefix: str = "",
            suffix: str = "",
            bar_length: int = 30,
        ) -> None:
            if progress:
                progress(cur_iter, total_iters)

        def set_verbosity(self, verbosity: str) -> None:
            pass

    before = EspLog.instance
    esplog: Any = log
    esplog.set_logger(_Log())
    try:
        yield
    finally:
        EspLog.instance = before


def flash_esp32(
    port: str,
    data: bytes,
    board: Board,
    *,
    erase: bool = False,
    progress: Progress | None = None,
    say: Say | None = None,
) -> None:
    import esptool

    def note(s: str) -> None:
        if say:
            say(s)

    with _esptool_progress(progress, say):
        note("connecting to the ROM bootloader")
        try:
            esp = esptool.detect_chip(port)
        except (esptool.FatalError, OSError) as e:
            raise DeviceError(f"no ESP bootloader answers on {port}: {_first_line(e)}") from None
        try:
            chip = str(esp.CHIP_NAME)
            if chip.replace("-", "").upper() != board.chip.replace("-", "").upper():
                raise UserError(f"the board on {port} is an {chip}, not an {board.chip}")
            note(f"{chip} found; loading the flasher stub")
            esp = esptool.run_stub(esp)
            if erase:
                note("erasing the whole flash")
                esptool.erase_flash(esp)
            note(f"writing {len(data)} bytes at 0x{board.firmware_offset:x}")
            esptool.write_flash(esp, [(board.firmware_offset, data)])
            note("verifying")
            esptool.verify_flash(esp, [(board.firmware_offset, data)])
            note("resetting the board")
            esptool.reset_chip(esp, "hard-reset")
        except esptool.FatalError as e:
            raise DeviceError(f"esptool: {_first_line(e)}") from None
        finally:
            with contextlib.suppress(Exception):
                esp._port.close()  # type: ignore[attr-defined]


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else e.__class__.__name__


# ---- Pico W through the UF2 drive ----------------------------------------------------------


def _mount_points() -> list[Path]:
    cands: list[Path] = []
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 1:
                cands.append(Path(parts[1].replace("\\040", " ")))
    user = os.environ.get("USER", "")
    for base in (f"/media/{user}", f"/run/media/{user}", "/media", "/Volumes", "/mnt"):
        p = Path(base)
        with contextlib.suppress(OSError):
            if p.is_dir():
                cands.extend(q for q in p.iterdir() if q.is_dir())
    if sys.platform == "win32":
        cands.extend(Path(f"{c}:\\") for c in "DEFGHIJKLMNOPQRSTUVWXYZ")
    return cands


def uf2_info(drive: Path) -> dict[str, str] | None:
    """INFO_UF2.TXT of a drive as a dict, or None when it is not a UF2 drive."""
    info = drive / "INFO_UF2.TXT"
    try:
        text = info.read_text(errors="replace")
    except OSError:
        return None
    out: dict[str, str] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def find_uf2_drive(board: Board, override: Path | None = None) -> Path | None:
    """The mounted bootloader drive of a board of this chip, if there is one."""
    cands = [override] if override is not None else _mount_points()
    want = CHIP_BOOT_ID.get(board.chip, board.chip)
    for d in cands:
        info = uf2_info(d)
        if info is not None and info.get("Board-ID", "").startswith(want):
            return d
    return None


def _wait_drive(board: Board, override: Path | None, timeout: float, say: Say) -> Path:
    deadline = time.monotonic() + timeout
    told = False
    while True:
        d = find_uf2_drive(board, override)
        if d is not None:
            return d
        if time.monotonic() >= deadline:
            raise DeviceError(
                f"no {CHIP_BOOT_ID.get(board.chip, board.chip)} drive appeared within "
                f"{timeout:.0f} s: hold BOOTSEL while plugging the board in (or mount the drive "
                f"and pass --uf2-dir)"
            )
        if not told and time.monotonic() > deadline - timeout + 3:
            say("waiting for the UF2 drive: hold BOOTSEL while plugging the board in")
            told = True
        time.sleep(0.25)


def _wait_port(board: Board, port: str | None, timeout: float) -> str:
    """The MicroPython serial port after a flash: the board's USB ids, or the same path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in list_boards():
            if p.board == board.name and not p.bootsel:
                return p.device
        if port and os.path.exists(port):
            return port
        time.sleep(0.25)
    raise DeviceError(
        f"the board did not come back as a serial port within {timeout:.0f} s (unplug and "
        "plug it in; check the image with `mpremote connect PORT repl`)"
    )


def flash_uf2(
    port: str | None,
    data: bytes,
    board: Board,
    *,
    name: str,
    uf2_dir: Path | None = None,
    progress: Progress | None = None,
    say: Say | None = None,
    drive_timeout: float = 60.0,
    port_timeout: float = 30.0,
) -> tuple[Path, str | None]:
    """Copy a checked UF2 to the board's bootloader drive; returns (drive, port back)."""
    note: Say = say or (lambda _s: None)
    drive = find_uf2_drive(board, uf2_dir)
    if drive is None and port:
        note("asking MicroPython to enter the bootloader")
        try:
            with Device(port, soft_reset=False, retries=1, timeout=5) as dev:
                dev.bootloader()
        except DeviceError as e:
            note(f"{e}; hold BOOTSEL while plugging the board in")
    if drive is None:
        drive = _wait_drive(board, uf2_dir, drive_timeout, note)
    target = drive / Path(name).name
    note(f"copying to {drive}")
    total = len(data)
    done = 0
    try:
        with open(target, "wb") as f:
            for i in range(0, total, 64 * 1024):
                f.write(data[i : i + 64 * 1024])
                done += min(64 * 1024, total - i)
                if progress:
                    progress(done, total)
            f.flush()
            with contextlib.suppress(OSError):
                os.fsync(f.fileno())
    except OSError as e:
        raise DeviceError(f"copying to {drive} failed: {e.strerror or e}") from None
    back: str | None = None
    if port_timeout > 0:
        note("waiting for the board to restart")
        back = _wait_port(board, port, port_timeout)
    return target, back


# ---- entry point ---------------------------------------------------------------------------


def flash(
    port: str | None,
    firmware: Path,
    *,
    board: str | None = None,
    erase: bool = False,
    uf2_dir: Path | None = None,
    progress: Progress | None = None,
    say: Say | None = None,
    port_timeout: float = 30.0,
) -> FlashResult:
    t0 = time.monotonic()
    if port == "auto":
        port = None  # found by USB ids below, as when no port is named
    data = read_image(firmware)  # missing file: refused before any board is touched
    if uf2_dir is None and os.environ.get(UF2_DIR_ENV):
        uf2_dir = Path(os.environ[UF2_DIR_ENV])
    b = resolve_board(board, port)
    check_image(data, b, firmware.name)  # wrong chip: refused before anything is erased
    if b.firmware_format == "bin":
        if not port:
            found = [p.device for p in list_boards() if p.board == b.name and not p.bootsel]
            port = found[0] if len(found) == 1 else None
        if not port:
            raise UserError(f"{b.name}: name the serial port with --port")
        flash_esp32(port, data, b, erase=erase, progress=progress, say=say)
        return FlashResult(
            b.name, port, str(firmware), len(data), "esptool", erase, time.monotonic() - t0
        )
    if erase:
        raise UserError(
            f"--erase is for ESP32 boards; a UF2 copy keeps the {b.name}'s file system "
            "(remove files with `mpremote rm -r :`)"
        )
    target, back = flash_uf2(
        port,
        data,
        b,
        name=firmware.name,
        uf2_dir=uf2_dir,
        progress=progress,
        say=say,
        port_timeout=port_timeout,
    )
    return FlashResult(
        b.name,
        back or port,
        str(firmware),
        len(data),
        "uf2",
        False,
        round(time.monotonic() - t0, 3),
        str(target.parent),
    )
