"""The clock host tools wait by: wall time for a real board, *board time* for an emulated one.

An emulated board is two processes on this machine (the engine in Python, the MicroPython VM
in Node), so on a busy machine it answers late for no fault of its own: a wall-clock timeout
would call it dead. While it is served, an emulated board announces each of its serial ports
here (a small JSON file per port in a per-user runtime directory: the process, the engine's
thread and the flash directory, which names its Node process). A wait on an announced port
counts board time: wall time minus the time the board's threads were ready to run but waiting
for a CPU (the kernel's per-thread ``run_delay``, /proc/PID/task/TID/schedstat). On an idle
machine that is wall time; on a loaded one every timeout stretches by exactly the time the
board was kept from running, and a board that hangs (busy or idle) still times out.

Real boards, unannounced ports and systems without schedstat keep the wall clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SAMPLE_S = 0.2  # how often the board's wait for a CPU is read while a wait goes on
_RESCAN_S = 1.0  # how often the Node process is looked for again when it is not known


def _dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join(
        tempfile.gettempdir(), f"atsource-{os.getuid()}"
    )
    return Path(base) / "atsource-ports"


def _key(port: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", port).strip("_") + ".json"


@dataclass(frozen=True)
class EmulatedPort:
    """An announced port: the emulator's process, its engine thread and its flash directory."""

    port: str
    pid: int
    tid: int
    flash: str


@contextlib.contextmanager
def announce(ports: list[str], flash_dir: Path, tid: int | None = None) -> Iterator[None]:
    """Announce an emulated board's ports for as long as the block runs. ``tid`` is the
    native id of the thread running the board's engine (default: the calling thread)."""
    d = _dir()
    written: list[Path] = []
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for port in ports:
            doc = {
                "port": port,
                "pid": os.getpid(),
                "tid": tid if tid is not None else _native_id(),
                "flash": str(Path(flash_dir).resolve()),
            }
            path = d / _key(port)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            tmp.replace(path)
            written.append(path)
    except OSError:
        pass  # no runtime directory: waits on this board fall back to the wall clock
    try:
        yield
    finally:
        for path in written:
            with contextlib.suppress(OSError):
                # Only our own announcement: a pty name may have been reused since.
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()


def _native_id() -> int:
    import threading

    return threading.get_native_id()


def lookup(port: str) -> EmulatedPort | None:
    """The emulated board behind ``port``, if one announced it and its process still runs."""
    path = _dir() / _key(port)
    try:
        doc = json.loads(path.read_text())
        found = EmulatedPort(str(doc["port"]), int(doc["pid"]), int(doc["tid"]), str(doc["flash"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if found.port != port or not os.path.exists(f"/proc/{found.pid}/task/{found.tid}"):
        return None
    return found


def _run_delay_ns(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class BoardClock:
    """A monotonic clock in seconds: wall time, less the emulated board's wait for a CPU."""

    def __init__(self, emulated: EmulatedPort | None) -> None:
        self.emulated = emulated
        self._engine = f"/proc/{emulated.pid}/task/{emulated.tid}/schedstat" if emulated else ""
        self._node: int | None = None
        self._scanned = -1e9
        self._last: dict[str, int] = {}
        self._starved_s = 0.0
        self._sampled = -1e9
        self._latest = 0.0
        if emulated is not None and _run_delay_ns(self._engine) is None:
            self.emulated = None  # no schedstat here: wall time
        if self.emulated is not None:
            self._sample(time.monotonic())

    def now(self) -> float:
        wall = time.monotonic()
        if self.emulated is not None and wall - self._sampled >= SAMPLE_S:
            self._sample(wall)
        # Between samples board time runs with the wall clock; never backwards.
        self._latest = max(self._latest, wall - self._starved_s)
        return self._latest

    def _sample(self, wall: float) -> None:
        interval = wall - self._sampled
        self._sampled = wall
        now: dict[str, int] = {}
        rd = _run_delay_ns(self._engine)
        if rd is not None:
            now[self._engine] = rd
        node = self._node_path(wall)
        if node is not None:
            rd = _run_delay_ns(node)
            if rd is None:
                self._node = None  # the VM restarted (a reset): find the new one next time
            else:
                now[node] = rd
        starved = 0.0
        for k, v in now.items():
            # A thread seen for the first time (a new VM after a reset) counts from its start;
            # none can have waited longer than the interval (the engine and the VM take turns,
            # so their waits add up).
            starved += min(interval, max(0, v - self._last.get(k, 0 if self._last else v)) / 1e9)
        self._starved_s += min(interval, starved)
        self._last = now

    def _node_path(self, wall: float) -> str | None:
        if self._node is None and wall - self._scanned >= _RESCAN_S:
            self._scanned = wall
            self._node = _find_vm(self.emulated) if self.emulated else None
        return f"/proc/{self._node}/schedstat" if self._node is not None else None


def _find_vm(emu: EmulatedPort) -> int | None:
    """The Node process of this board: a child of the emulator process whose command line
    names the board's flash directory."""
    want = f"--flash={emu.flash}".encode()
    ppid = str(emu.pid).encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rindex(b")") + 2 :].split()[1] != ppid:
                continue
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                if want in f.read().split(b"\0"):
                    return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def clock_for(port: str) -> BoardClock:
    return BoardClock(lookup(port))
