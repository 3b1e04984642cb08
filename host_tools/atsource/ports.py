"""Which boards are there: USB boards (pyserial's list_ports, matched against the USB ids of
boards/*.json) and emulated boards served on this machine (`atsource emulate --serial` writes
a small runtime file while it serves, and removes it when it stops). ``--port auto`` (the
default of every command that takes a port) means "the one board found"."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import paths
from .errors import DeviceError, UserError

AUTO = "auto"
RUNTIME_ENV = "ATSOURCE_RUNTIME_DIR"


@dataclass(frozen=True)
class FoundPort:
    port: str  # what to pass as --port
    kind: str  # "usb", "bootsel" (a board in its USB bootloader: flash only) or "emulated"
    board: str | None
    detail: str  # USB vid:pid, or the emulated board's instance
    url: str | None = None  # an emulated board's socket:// URL (the same REPL)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_dir() -> Path:
    """Where serving emulators announce themselves: $ATSOURCE_RUNTIME_DIR, else
    $XDG_RUNTIME_DIR/atsource, else the cache's run/ directory."""
    if os.environ.get(RUNTIME_ENV):
        return Path(os.environ[RUNTIME_ENV])
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "atsource" if xdg else paths.cache_dir() / "run"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def announce(board: str, instance: str, pty: str, url: str) -> Iterator[Path]:
    """While the block runs, `atsource ports` lists this emulated board."""
    d = runtime_dir()
    d.mkdir(parents=True, exist_ok=True)
    f = d / f"emulated-{os.getpid()}.json"
    tmp = f.with_suffix(".tmp")
    info = {"pid": os.getpid(), "board": board, "instance": instance, "pty": pty, "url": url}
    tmp.write_text(json.dumps(info))
    tmp.replace(f)
    try:
        yield f
    finally:
        with contextlib.suppress(OSError):
            f.unlink()


def emulated_ports() -> list[FoundPort]:
    """Emulated boards served on this machine; files left by a killed emulator are removed."""
    d = runtime_dir()
    found: list[FoundPort] = []
    for f in sorted(d.glob("emulated-*.json")) if d.is_dir() else []:
        try:
            info = json.loads(f.read_text())
            pid, pty = int(info["pid"]), str(info["pty"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid) or not os.path.exists(pty):
            with contextlib.suppress(OSError):
                f.unlink()
            continue
        found.append(
            FoundPort(
                pty, "emulated", info.get("board"), str(info.get("instance")), info.get("url")
            )
        )
    return found


def usb_ports() -> list[FoundPort]:
    from .device import list_boards

    return [
        FoundPort(
            p.device,
            "bootsel" if p.bootsel else "usb",
            p.board,
            f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else "",
        )
        for p in list_boards()
    ]


def all_ports() -> list[FoundPort]:
    return usb_ports() + emulated_ports()


def resolve(port: str | None) -> str:
    """The port to use: ``port`` itself, or for None/"auto" the one board attached or served
    here (a board in its bootloader does not count: it has no REPL)."""
    if port and port != AUTO:
        return port
    found = [p for p in all_ports() if p.kind != "bootsel"]
    if not found:
        raise DeviceError(
            "no board found (no USB board with known ids, no emulated board served here): "
            "plug one in or name it with --port"
        )
    if len(found) > 1:
        names = ", ".join(f"{p.port} ({p.board or '?'})" for p in found)
        raise UserError(f"{len(found)} boards found ({names}): name one with --port")
    return found[0].port
