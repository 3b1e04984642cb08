"""The emulated board as tests and tools use it: make one, run it, or serve it on a port."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .. import firmware_build, paths
from ..boards import Board, load_board
from ..boardtime import announce, clock_for
from ..errors import UserError
from .engine import EmulatedBoard, EmulatorError
from .serialport import SerialBridge

T = TypeVar("T")
STALL_S = 60.0  # a board whose clock stands still this long (its own time) is stuck


def default_flash_dir(board: str, instance: str = "default") -> Path:
    """Where a board's flash lives between runs unless --flash says otherwise."""
    return paths.cache_dir() / "flash" / f"{board}-{instance}"


@contextmanager
def lock_flash(flash_dir: Path) -> Iterator[None]:
    """Hold a flash directory for one emulator: two boards booting the same flash would share
    an identity and a message counter (a reused nonce). The lock is a file beside the directory
    (``.NAME.lock``), so it survives --erase and adds nothing to the board's file system; the
    kernel drops it when the process dies, so a killed emulator leaves no stale lock."""
    import fcntl

    flash_dir = flash_dir.absolute()
    flash_dir.parent.mkdir(parents=True, exist_ok=True)
    path = flash_dir.parent / f".{flash_dir.name}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UserError(
                f"flash directory {flash_dir} is in use by another emulator (pid {other}): "
                "stop it, or give this one its own --flash or --instance"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def resolve_scenario(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (paths.SCENARIOS / name_or_path, paths.SCENARIOS / f"{name_or_path}.toml"):
        if cand.is_file():
            return cand
    known = ", ".join(sorted(q.stem for q in paths.SCENARIOS.glob("*.toml")))
    raise UserError(f"scenario not found: {name_or_path} (shipped scenarios: {known})")


def parse_start(text: str) -> int:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(
            f"bad start time '{text}': use ISO 8601, e.g. 2026-06-01T00:00:00Z"
        ) from None
    if dt.tzinfo is None:
        raise UserError(f"start time '{text}' needs a time zone, e.g. a trailing Z for UTC")
    return int(dt.timestamp()) * 1_000_000


def make_world(board: Board, scenario: str | None, seed: int | None, start_us: int | None) -> Any:
    if scenario is None:
        from .bench import BenchWorld

        return BenchWorld(board, start_us)
    from .scenario import ScenarioError, load_scenario
    from .world import ScenarioWorld

    try:
        sc = load_scenario(resolve_scenario(scenario))
    except ScenarioError as e:
        raise UserError(str(e)) from None
    return ScenarioWorld(sc, board.raw, seed=seed)


def prepare_flash(
    board: Board,
    flash_dir: Path,
    *,
    erase: bool = False,
    firmware: Path | None = None,
    mpy: bool = True,
) -> int:
    """Erase and/or install firmware into a flash directory; returns files written."""
    if erase:
        firmware_build.erase(flash_dir)
    flash_dir.mkdir(parents=True, exist_ok=True)
    if firmware is None:
        return 0
    n = firmware_build.install(firmware_build.build(board, firmware, mpy=mpy), flash_dir)
    cfg = flash_dir / "config.json"
    if not cfg.exists():
        # An emulated board sits within reach of the world's emulated access point; a real
        # board gets its Wi-Fi settings from `atsource provision --config`.
        cfg.write_text(json.dumps(EMULATED_CONFIG) + "\n")
        n += 1
    return n


EMULATED_CONFIG = {"v": 1, "wifi": {"ssid": "atsource-emulated", "key": ""}}


def frame_writer(path: Path) -> Callable[[bytes], bool]:
    """An ``on_frame`` that appends each frame to a capture file: hex, one frame per line
    (the format ``atsource receive`` reads; ``#`` lines are comments)."""
    try:
        f = path.open("a", encoding="ascii")
    except OSError as e:
        raise UserError(f"cannot write uplink capture {path}: {e.strerror}") from None
    f.write(f"# atsource uplink capture, started {datetime.now().isoformat(timespec='seconds')}\n")
    f.flush()

    def write(frame: bytes) -> bool:
        f.write(frame.hex() + "\n")
        f.flush()  # a frame counts as delivered once it is in the file
        return True

    return write


class ServedBoard:
    """An emulated board running in a background thread behind a serial port."""

    def __init__(self, emu: EmulatedBoard, bridge: SerialBridge) -> None:
        self.emu = emu
        self.bridge = bridge
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"emu-{emu.instance}")

    @property
    def port(self) -> str:
        return self.bridge.url

    @property
    def socket_url(self) -> str:
        return f"socket://127.0.0.1:{self.bridge.tcp_port}"

    def _run(self) -> None:
        try:
            self.emu.serve(self.bridge)
        except BaseException as e:  # noqa: BLE001 - reported to the test that owns the board
            self.error = e

    def start(self) -> ServedBoard:
        self._thread.start()
        # Host tools on these ports wait by the board's clock, not the wall clock (boardtime).
        self._announced = announce(self.bridge.urls, self.emu.flash_dir, self._thread.native_id)
        self._announced.__enter__()
        return self

    def power_cut(self, off_s: float = 0.0) -> None:
        done = threading.Event()

        def cut() -> None:
            self.emu.power_cut(int(off_s * 1_000_000))
            done.set()

        self.emu.call_soon(cut)
        # The engine runs commands between steps: wait while it runs, however slowly.
        while not done.wait(0.2):
            if self.error is not None:
                raise self.error
            if not self._thread.is_alive():
                raise EmulatorError("the emulated board stopped before the power cut")

    @property
    def boots(self) -> int:
        """How many times the board has started (power-on, resets, soft reboots)."""
        return len(self.emu.stats.resets)

    def wait_boot(self, after: int, within: float = 10.0) -> None:
        """Wait until the board has started more than ``after`` times (``boots``), e.g. until
        power is back after ``power_cut``."""
        self.wait(lambda: True if self.boots > after else None, within, "the board did not start")

    def wait(self, ready: Callable[[], T | None], within: float, what: str) -> T:
        """Poll ``ready()`` until it returns something other than None, for up to ``within``
        seconds of the board's virtual clock, however slowly a busy machine runs it. Raises
        the board's error if it fails, and ``TimeoutError`` when the time is up or its clock
        stands still for ``STALL_S`` seconds of its own time (``boardtime``: time spent
        waiting for a CPU does not count)."""
        emu = self.emu
        end_us = emu.now_us + int(within * 1e6)
        clock = clock_for(self.port)
        moved_at, seen_us = clock.now(), emu.now_us
        while (got := ready()) is None:
            if self.error is not None:
                raise self.error
            now_us = emu.now_us
            if now_us >= end_us:
                raise TimeoutError(f"{what} within {within:g} s of board time")
            if now_us != seen_us:
                moved_at, seen_us = clock.now(), now_us
            elif clock.now() - moved_at > STALL_S:
                raise TimeoutError(f"{what}: the board's clock stood still for {STALL_S:g} s")
            time.sleep(0.02)
        return got

    def wait_for(self, text: str, within: float = 10.0) -> str:
        """Wait until a console line contains ``text`` (for up to ``within`` seconds of board
        time); return that line."""
        seen = 0

        def find() -> str | None:
            nonlocal seen
            lines = self.emu.lines
            for _, line in lines[seen:]:
                if text in line:
                    return line
            seen = len(lines)
            return None

        return self.wait(find, within, f"'{text}' did not appear on the console")

    def stop(self) -> None:
        self._announced.__exit__(None, None, None)
        self.emu.stop()
        self._thread.join(timeout=20)
        self.bridge.close()
        if self.error is not None and not isinstance(self.error, KeyboardInterrupt):
            raise self.error


@contextmanager
def serve_board(
    board: str | Board,
    flash_dir: Path,
    *,
    world: Any = None,
    speed: float | None = 1.0,
    seed: int | None = None,
    start_us: int | None = None,
    pty: bool = True,
    tcp_port: int | None = 0,
    instance: str | None = None,
    stall_timeout: float = 10.0,
    on_frame: Callable[[bytes], bool] | None = None,
) -> Iterator[ServedBoard]:
    """Run an emulated board behind a pty and a TCP port for the duration of the block."""
    b = load_board(board) if isinstance(board, str) else board
    emu = EmulatedBoard(
        b,
        flash_dir,
        world=world,
        speed=speed,
        seed=seed,
        start_us=start_us,
        instance=instance,
        stall_timeout=stall_timeout,
        on_frame=on_frame,
    )
    bridge = SerialBridge(pty=pty, tcp_port=tcp_port)
    served = ServedBoard(emu, bridge).start()
    try:
        yield served
    finally:
        served.stop()
