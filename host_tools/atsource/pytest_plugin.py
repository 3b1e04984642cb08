"""pytest plugin: one board test suite for real boards and emulated boards (docs/testing.md).

Registered as the ``pytest11`` entry point ``atsource``, so any pytest run in an environment
where the host package is installed has it. It does nothing until a test asks for the ``dut``
or ``duts`` fixture:

- ``--board PORT`` (a real board on a serial port) or ``--board emulated:BOARD`` (repeatable).
  Without ``--board`` the boards come from ``$ATSOURCE_BOARDS`` (comma or space separated;
  ``none`` disables board tests), else both emulated boards: the CI default.
- ``dut``: one board per test, parametrized over the boards. Each board is served (emulated),
  deployed (incrementally), and provisioned with a test identity into a temporary registry
  once per session; every test starts with the firmware freshly restarted.
- ``duts``: every board at once, for tests about several boards.
- Marks ``hardware`` (needs a real board) and ``emulated_only`` (needs power cuts or injected
  scenario events); each skips with its reason where it cannot run.
- The console of every board a test used is attached to its report when it fails (terminal,
  and JUnit XML ``system-out`` with ``junit_logging = system-out``).

A real board given with ``--board`` is probed at start-up: a port with no MicroPython board
behind it stops the run at once with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .record import STREAM_ID

if TYPE_CHECKING:
    from .device import Device
    from .emulator.api import ServedBoard
    from .frame import Opened
    from .registry import Registry

ENV_BOARDS = "ATSOURCE_BOARDS"
EMULATED = "emulated:"
DEFAULT_BOARDS = ("emulated:esp32-devkitc", "emulated:pico-w")
DEFAULT_SPEED = 60.0  # emulated boards: simulated seconds per wall second
DEFAULT_WINDOW_S = 60  # the test policy's window length (the policy minimum)
DEFAULT_SAMPLE_S = 5  # env sampling period under test: a dozen samples per window
CONSOLE_TAIL = 400  # console lines attached to a failed test's report
REAL_MARGIN_S = 10.0  # real boards: wall seconds allowed beyond the board time waited for

BOOT_RE = r"atsource: (\S+) boot (\d+) \((.+)\)"
STREAMS = STREAM_ID  # record stream name -> id (key 7), from the stream catalogue
STREAM_SELFTEST = STREAM_ID["selftest"]

_SKIP_NO_BOARD = (
    f"no board to test: pass --board PORT or --board emulated:BOARD (${ENV_BOARDS} is set to none)"
)
_SKIP_HARDWARE = "needs a real board: none attached (run with --board PORT)"
_SKIP_EMULATED = "needs an emulated board (power cuts and scenario events cannot be injected)"

_DUTS_KEY = pytest.StashKey[list["Dut"]]()
T = TypeVar("T")


# ---- options -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("atsource", "atsource board tests (hardware in the loop)")
    g.addoption(
        "--board",
        action="append",
        default=None,
        metavar="PORT|emulated:BOARD",
        help="board to test: a serial port (real board) or emulated:BOARD; repeatable. "
        f"Default: ${ENV_BOARDS}, else {' and '.join(DEFAULT_BOARDS)}",
    )
    g.addoption(
        "--board-config",
        default=None,
        metavar="FILE",
        help="JSON merged into the test config.json of real boards (Wi-Fi, uplink)",
    )
    g.addoption(
        "--board-speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"emulated boards: simulated seconds per wall second (default {DEFAULT_SPEED:g})",
    )
    g.addoption(
        "--board-window",
        type=int,
        default=DEFAULT_WINDOW_S,
        help=f"window length in seconds of the test policy (default {DEFAULT_WINDOW_S})",
    )
    parser.addini(
        "atsource_scenario",
        "scenario (name or file) for emulated boards under test (default: smoke)",
        default="smoke",
    )


@dataclass(frozen=True)
class BoardSpec:
    text: str

    @property
    def emulated(self) -> bool:
        return self.text.startswith(EMULATED)

    @property
    def target(self) -> str:
        """The board name (emulated) or the port (real)."""
        return self.text[len(EMULATED) :] if self.emulated else self.text

    @property
    def id(self) -> str:
        return self.target if self.emulated else "port-" + Path(self.target).name


def board_specs(config: pytest.Config) -> list[BoardSpec]:
    given: list[str] | None = config.getoption("board")
    if given:
        texts = [t for g in given for t in re.split(r"[,\s]+", g) if t]
    elif os.environ.get(ENV_BOARDS) is not None:
        texts = [t for t in re.split(r"[,\s]+", os.environ[ENV_BOARDS]) if t]
        texts = [] if [t.lower() for t in texts] in ([], ["none"]) else texts
    else:
        texts = list(DEFAULT_BOARDS)
    seen: list[BoardSpec] = []
    for t in texts:
        spec = BoardSpec(t)
        if spec not in seen:
            seen.append(spec)
    return seen


_SPECS_KEY = pytest.StashKey[list[BoardSpec]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hardware: needs a real board on a serial port")
    config.addinivalue_line(
        "markers", "emulated_only: needs an emulated board (power cuts, injected events)"
    )
    specs = board_specs(config)
    if not (config.option.help or config.option.version):
        _check_specs(specs)
    config.stash[_SPECS_KEY] = specs


def _check_specs(specs: list[BoardSpec]) -> None:
    """Unknown emulated boards and real ports without a board stop the run with one line."""
    from .boards import board_names
    from .device import Device
    from .errors import DeviceError

    known = board_names()
    for s in specs:
        if s.emulated:
            if s.target not in known:
                raise pytest.UsageError(
                    f"--board {s.text}: unknown board (emulated boards: {', '.join(known)})"
                )
            continue
        try:
            Device(s.target, timeout=3, retries=1, soft_reset=False).close()
        except DeviceError as e:
            raise pytest.UsageError(f"--board {s.target}: {e}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dut" not in metafunc.fixturenames:
        return
    specs = metafunc.config.stash[_SPECS_KEY]
    if not specs:
        metafunc.parametrize(
            "dut", [pytest.param(None, marks=pytest.mark.skip(reason=_SKIP_NO_BOARD))],
            indirect=True, ids=["no-board"],
        )  # fmt: skip
        return
    metafunc.parametrize("dut", specs, indirect=True, ids=[s.id for s in specs])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    specs = config.stash[_SPECS_KEY]
    real = any(not s.emulated for s in specs)
    for item in items:
        if item.get_closest_marker("hardware") and not real:
            item.add_marker(pytest.mark.skip(reason=_SKIP_HARDWARE))


# ---- the test policy and config ------------------------------------------------------------


def hil_policy(window_s: int) -> dict[str, Any]:
    """The shipped default policy with every window shortened, so a test sees several windows
    in minutes on a real board; budget exhaustion is allowed (short windows spend faster)."""
    from . import policy as policymod

    pol = json.loads(policymod.DEFAULT.read_text(encoding="utf-8"))
    for s in pol["streams"].values():
        s["window_s"] = window_s
    pol["budget"]["allow_exhaustion"] = True
    pol["name"] = "atsource hardware-in-loop test policy"
    return pol


# ---- the console of a real board -----------------------------------------------------------


class _SerialConsole:
    """Reads a real board's console in a thread while no REPL session holds the port."""

    def __init__(self, port: str, lines: list[str]) -> None:
        self.port = port
        self.lines = lines
        self._buf = b""
        self._ser: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def resume(self, wait_s: float = 10.0) -> None:
        import serial

        deadline = time.monotonic() + wait_s
        while True:
            try:
                s = serial.serial_for_url(self.port, do_not_open=True, baudrate=115200)
                s.timeout = 0.1
                # Keep DTR and RTS released: on ESP32 dev boards they drive EN and GPIO0, and
                # asserting them on open would reset the board.
                s.dtr = False
                s.rts = False
                s.open()
                break
            except (serial.SerialException, OSError):
                # A Pico's USB serial port disappears for a moment after a reset.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._ser = s
        self._stop.clear()
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"con-{self.port}")
        self._thread.start()

    def _read(self) -> None:
        ser = self._ser
        while not self._stop.is_set():
            try:
                data = ser.read(256)
            except Exception:  # noqa: BLE001 - the port went away (a reset): stop reading
                return
            if data:
                self.feed(data)

    def feed(self, data: bytes) -> None:
        buf = self._buf + data
        *done, self._buf = buf.split(b"\n")
        self.lines.extend(x.decode("utf-8", "replace").rstrip("\r") for x in done)

    def pause(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._ser is not None:
            with contextlib.suppress(Exception):
                self._ser.close()
            self._ser = None


# ---- the world of an emulated board, with injection -----------------------------------------


class InjectableWorld:
    """A scenario world plus events a test injects (``dut.inject``): each is delivered with the
    next batch the board asks for, stamped at that batch's end (the board's "now")."""

    def __init__(self, base: Any) -> None:
        self.base = base
        self.start_us: int = base.start_us
        self.end_us: int = base.end_us
        self._pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def inject(self, kind: str, *args: Any) -> None:
        with self._lock:
            self._pending.append((kind, *args))

    def events_until(self, t_us: int) -> list[tuple[Any, ...]]:
        out = list(self.base.events_until(t_us))
        with self._lock:
            pending, self._pending = self._pending, []
        out += [(kind, t_us, *args) for kind, *args in pending]
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)


# ---- the board under test ------------------------------------------------------------------


def parse_outbox(log: bytes, head: bytes | None = None) -> list[bytes]:
    """Frames waiting in an ``/outbox.log`` (docs/uplink.md), from the persisted head on."""
    if len(log) < 8 or log[:4] != b"AOB\x01":
        return []
    gen = log[4:8]
    pos = 8
    if (
        head
        and len(head) == 20
        and head[:4] == b"OBH1"
        and head[4:8] == gen
        and zlib.crc32(head[:16]) == int.from_bytes(head[16:20], "big")
    ):
        pos = max(8, int.from_bytes(head[8:12], "big"))
    frames: list[bytes] = []
    while pos + 6 <= len(log):
        n = int.from_bytes(log[pos : pos + 2], "big")
        crc = int.from_bytes(log[pos + 2 : pos + 6], "big")
        frame = log[pos + 6 : pos + 6 + n]
        if len(frame) != n or zlib.crc32(log[pos : pos + 2] + frame) != crc:
            break  # a torn tail: the firmware cuts it off on its next open
        frames.append(frame)
        pos += 6 + n
    return frames


class Dut:
    """A board under test: a real one on a serial port or an emulated one behind a pty."""

    def __init__(
        self, spec: BoardSpec, workdir: Path, config: pytest.Config, registry: Registry
    ) -> None:
        self.spec = spec
        self.emulated = spec.emulated
        self.workdir = workdir
        self.window_s: int = config.getoption("board_window")
        self.speed: float = config.getoption("board_speed") if self.emulated else 1.0
        self._config = config
        self._stack = ExitStack()
        self._dev: Device | None = None
        self._console: _SerialConsole | None = None
        self._real_lines: list[str] = []
        self._raw_frames: list[bytes] = []
        self._opened: list[tuple[int, Opened]] = []  # (index in _raw_frames, opened)
        self._seen: set[bytes] = set()
        self.rejected: list[tuple[bytes, str]] = []
        self._cursor = 0
        self._log_mark = 0
        self._frame_mark = 0
        self._max_piv = -1  # the highest counter of any frame opened so far
        self._piv_mark = -1
        self._net_down = False
        self.log_start = 0  # first console line of the current test (for failure reports)
        self.served: ServedBoard | None = None
        self.world: Any = None
        self.board_name = spec.target if self.emulated else "?"
        self.port = spec.target
        self.registry = registry  # the session's fleet registry, shared by every board
        self.kid = b""
        self.policy_hash4 = b""

    # ---- bring-up ------------------------------------------------------------------------
    def bring_up(self) -> Dut:
        from .deploy import deploy
        from .provision import load_policy, provision

        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.emulated:
            self._serve()
        else:
            self._console = _SerialConsole(self.port, self._real_lines)
        res = deploy(self.port)
        self.board_name = res.board
        pol_path = self.workdir / "policy.json"
        pol_path.write_text(json.dumps(hil_policy(self.window_s)) + "\n")
        cfg_path = self.workdir / "config.json"
        cfg_path.write_text(json.dumps(self._test_config()) + "\n")
        result = provision(
            self.port,
            f"hil-{self.board_name}",
            registry=self.registry,
            policy=pol_path,
            config=cfg_path,
            force=True,  # a real board may hold an identity this test registry never saw
            reset=False,
        )
        self.kid = bytes.fromhex(result.kid)
        self.policy_hash4 = load_policy(pol_path).hash4
        return self

    def _serve(self) -> None:
        from .boards import load_board
        from .emulator.api import make_world, prepare_flash, serve_board

        board = load_board(self.spec.target)
        flash = self.workdir / "flash"
        prepare_flash(board, flash, erase=True)
        scenario = str(self._config.getini("atsource_scenario") or "smoke")
        if not Path(scenario).is_absolute() and (self._config.rootpath / scenario).is_file():
            scenario = str(self._config.rootpath / scenario)
        self.world = InjectableWorld(make_world(board, scenario, None, None))
        self.served = self._stack.enter_context(
            serve_board(
                board,
                flash,
                world=self.world,
                speed=self.speed,
                instance=f"hil-{board.name}",
                on_frame=self._on_frame,
            )
        )
        self.port = self.served.port

    def _test_config(self) -> dict[str, Any]:
        from .emulator.api import EMULATED_CONFIG

        # No watchdog under test: the suite holds the board at the REPL between tests, and a
        # watchdog cannot be stopped once armed (an RP2040's resets within 8.4 s), so it would
        # reset the board mid-test, on real and emulated boards alike.
        cfg: dict[str, Any] = {"v": 1, "env": {"sample_s": DEFAULT_SAMPLE_S}, "watchdog_ms": 0}
        if self.emulated:
            cfg.update(EMULATED_CONFIG)
        path = self._config.getoption("board_config")
        if path and not self.emulated:
            from .provision import load_config

            cfg.update(load_config(Path(path)))
        return cfg

    def _on_frame(self, frame: bytes) -> bool:
        self._raw_frames.append(frame)  # runs on the emulator's thread; list.append is atomic
        return True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._close_repl(run=False)
        if self._console is not None:
            self._console.pause()
        self._stack.close()

    # ---- the console ---------------------------------------------------------------------
    @property
    def log(self) -> list[str]:
        """Every console line so far (emulated: the board's line log, REPL traffic included)."""
        if self.served is not None:
            return [line for _, line in self.served.emu.lines]
        return self._real_lines

    def console_bytes(self) -> bytes:
        if self.served is not None:
            return bytes(self.served.emu.console)
        return "\n".join(self._real_lines).encode()

    def mark(self) -> None:
        """From here on, ``expect`` looks only at lines printed after this point and
        ``wait_frames`` only at frames received after it."""
        self._cursor = len(self.log)
        self._log_mark = self._cursor
        self._frame_mark = len(self._raw_frames)
        # Counters only grow: a frame sealed after this point has a higher one than any seen.
        self._piv_mark = self._max_piv

    def wait(self, ready: Callable[[], T | None], within: float, what: str) -> T:
        """Poll ``ready()`` until it returns something other than None; give up after
        ``within`` seconds of board time. A real board's time is the wall clock (plus a margin
        for the host's own work). An emulated board's is its virtual clock, however slowly the
        machine runs it (``ServedBoard.wait``)."""
        if self.served is not None:
            try:
                return self.served.wait(ready, within, what)
            except TimeoutError as e:
                raise AssertionError(f"{self.name}: {e}") from None
            except BaseException as e:
                if e is self.served.error:
                    raise AssertionError(f"{self.name}: the emulated board failed: {e}") from e
                raise
        deadline = time.monotonic() + within + REAL_MARGIN_S
        while (got := ready()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {what} within {within:g} s")
            time.sleep(0.02)
        return got

    def expect(self, pattern: str, within: float | None = None) -> re.Match[str]:
        """Wait for a console line matching ``pattern`` (a regex) printed since the last match
        (or ``mark``, ``start``, ``reset``), for up to ``within`` seconds of board time
        (default: two windows)."""
        rx = re.compile(pattern)

        def match() -> re.Match[str] | None:
            lines = self.log
            for i in range(self._cursor, len(lines)):
                m = rx.search(lines[i])
                if m:
                    self._cursor = i + 1
                    return m
            self._cursor = max(self._cursor, len(lines))
            return None

        limit = within if within is not None else 2 * self.window_s
        return self.wait(match, limit, f"no console line matching {pattern!r}")

    @property
    def name(self) -> str:
        return (
            f"{self.board_name} (emulated)"
            if self.emulated
            else f"{self.board_name} on {self.port}"
        )

    # ---- the REPL --------------------------------------------------------------------------
    def _repl(self) -> Device:
        from .device import Device

        if self._dev is None:
            if self._console is not None:
                self._console.pause()
            self._dev = Device(self.port, timeout=15)
        return self._dev

    def _close_repl(self, run: bool) -> None:
        """Leave the REPL; with ``run`` the firmware starts again (soft reboot into main.py)."""
        dev = self._dev
        if dev is None and run:
            dev = self._repl()
        if dev is None:
            return
        self._dev = None
        if run:
            dev.soft_reboot()
        dev.close()
        if self._console is not None:
            self._console.resume()

    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run code at the board's REPL; returns what it printed. The firmware stops while the
        REPL is in use (``start`` runs it again)."""
        out = self._repl().exec(code, timeout=timeout)
        if self._console is not None:
            self._console.feed(out.encode())  # what a real board printed at the REPL, too
        return out

    def eval(self, expr: str) -> Any:
        return self._repl().eval(expr)

    def files(self) -> list[str]:
        """Every file on the board's flash (absolute paths)."""
        return self._repl().list_files()

    def read_file(self, path: str) -> bytes:
        return self._repl().read_file(path)

    def data_files(self) -> dict[str, bytes]:
        """The files the firmware and provisioning wrote (everything but the deployed image)."""
        try:
            deployed = set(json.loads(self.read_file("/manifest.json"))["files"])
        except (FileNotFoundError, ValueError, KeyError):
            deployed = set()
        deployed.add("/manifest.json")
        return {p: self.read_file(p) for p in self.files() if p not in deployed}

    def start(self) -> None:
        """Restart the firmware (soft reboot into main.py); ``expect`` then sees its boot."""
        if not self.emulated:
            self._set_clock()
        self.mark()
        self._close_repl(run=True)

    def _set_clock(self) -> None:
        # A real board without Wi-Fi has no NTP: set its RTC from the host, as a technician's
        # laptop would. (Emulated boards get time from the emulated network.)
        t = datetime.now(UTC)
        self.exec(
            "import machine\nmachine.RTC().datetime(("
            f"{t.year},{t.month},{t.day},{t.weekday()},{t.hour},{t.minute},{t.second},0))"
        )

    def reset(self) -> None:
        """Hard reset (``machine.reset()``); the firmware boots again."""
        dev = self._repl()
        self.mark()
        self._dev = None
        dev.reset()
        if self._console is not None:
            self._console.resume(wait_s=15)
        if not self.emulated:
            # The board boots once from the reset; with no clock (no Wi-Fi under test) the
            # firmware is then stopped to set the RTC and started again, which counts a second
            # boot. The test is shown the boot the reset caused, not the restart.
            self.expect(BOOT_RE, within=30)
            at = self._cursor - 1
            self.start()
            self._cursor = at

    def power_cut(self, off_s: float = 0.0) -> None:
        """Cut the power (emulated boards only: a real board skips the test, saying so)."""
        if self.served is None:
            pytest.skip("power_cut needs an emulated board (a real board's power is not ours)")
        if self._dev is not None:
            self._dev.close()
            self._dev = None
        self.mark()
        self.served.power_cut(off_s)

    def inject(self, kind: str, *args: Any) -> None:
        """Inject a scenario event now, e.g. ``inject("net", False)`` for an outage
        (docs/scenarios.md). Emulated boards only: a real board skips the test, saying so."""
        if self.world is None:
            pytest.skip(f"inject({kind!r}) needs an emulated board (scenario events)")
        if kind == "net":
            self._net_down = not args[0]
        self.world.inject(kind, *args)

    # ---- frames ----------------------------------------------------------------------------
    @property
    def frames(self) -> list[Opened]:
        """Frames received from the board, opened with the test registry. Emulated: those its
        host link delivered; real: those fetched from its outbox (``fetch_frames``)."""
        from .frame import FrameRejected, parse_and_open

        raw = self._raw_frames
        for i in range(len(self._opened) + len(self.rejected), len(raw)):
            try:
                opened = parse_and_open(raw[i], self.registry.key_entry)
                self._opened.append((i, opened))
                self._max_piv = max(self._max_piv, opened.piv)
            except FrameRejected as e:
                self.rejected.append((raw[i], e.reason))
        return [o for _, o in self._opened]

    def _frames_since_mark(self) -> list[Opened]:
        self.frames  # noqa: B018 - opens what arrived
        return [o for i, o in self._opened if i >= self._frame_mark]

    def outbox(self) -> list[bytes]:
        """Frames waiting in the board's outbox (stops the firmware: reads it at the REPL)."""
        dev = self._repl()
        try:
            log = dev.read_file("/outbox.log")
        except FileNotFoundError:
            return []
        try:
            head: bytes | None = dev.read_file("/outbox.head")
        except FileNotFoundError:
            head = None
        return parse_outbox(log, head)

    def fetch_frames(self) -> list[Opened]:
        """A real board's transport cannot reach this host: take its frames from its outbox
        (the firmware stops). Emulated boards deliver over the host link: nothing to do."""
        if not self.emulated:
            for f in self.outbox():
                if f not in self._seen:
                    self._seen.add(f)
                    self._raw_frames.append(f)
        return self.frames

    def wait_frames(self, stream: str, n: int = 1, within: float | None = None) -> list[Opened]:
        """The first ``n`` records of ``stream`` the board released since the test began,
        waiting up to ``within`` seconds of board time (default: ``n + 1`` windows)."""
        code = STREAMS[stream]
        limit = within if within is not None else (n + 1) * self.window_s
        if not self.emulated:
            return self._wait_outbox_frames(stream, code, n, limit)

        def enough() -> list[Opened] | None:
            got = [f for f in self._frames_since_mark() if f.record.get(7) == code]
            return got[:n] if len(got) >= n else None

        return self.wait(enough, limit, f"fewer than {n} {stream} frames")

    def _wait_outbox_frames(self, stream: str, code: int, n: int, limit: float) -> list[Opened]:
        # A real board's frames wait in its outbox. Count its `rel` lines while the firmware
        # runs, then read the outbox at the REPL (which stops the firmware); if that is not
        # yet enough, run the firmware again and wait for the rest. Frames already read stay.
        rx = re.compile(rf"^rel {stream} ")
        deadline = time.monotonic() + limit + REAL_MARGIN_S  # a real board's time: the wall clock
        since = self._log_mark
        while True:
            # The outbox may still hold frames sealed before the test began: not these.
            got = [
                f
                for f in self._frames_since_mark()
                if f.record.get(7) == code and f.piv > self._piv_mark
            ]
            if len(got) >= n:
                return got[:n]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: {len(got)} of {n} {stream} frames within {limit:g} s"
                )
            if self._dev is not None:
                since = len(self.log)
                self._close_repl(run=True)  # the firmware must run to release anything
            while time.monotonic() < deadline:
                if sum(1 for x in self.log[since:] if rx.search(x)) >= n - len(got):
                    break
                time.sleep(0.05)
            self.fetch_frames()

    def selftest(self) -> Opened:
        """Have the board seal a self-test record; return it opened on the host."""
        from .frame import parse_and_open

        out = self.exec("import sensor.selftest\nsensor.selftest.run()", timeout=60)
        m = re.search(r"selftest frame=([0-9a-f]+)", out)
        assert m, f"{self.name}: no self-test frame in {out!r}"
        opened = parse_and_open(bytes.fromhex(m.group(1)), self.registry.key_entry)
        self._max_piv = max(self._max_piv, opened.piv)
        return opened

    def masked(self, expr: str) -> bytes | None:
        """Bytes of a board expression read without putting them on the console (XOR-masked),
        so the privacy audit can look for the board's own identifiers in what it emitted."""
        mask = secrets.token_bytes(32)
        out = self.exec(
            f"try:\n v=bytes({expr})\n m={mask!r}\n"
            " print(bytes(v[i]^m[i%32] for i in range(len(v))).hex())\nexcept Exception:\n"
            " print('-')"
        ).strip()
        if out == "-":
            return None
        v = bytes.fromhex(out.splitlines()[-1])
        return bytes(b ^ mask[i % 32] for i, b in enumerate(v))

    def device_secrets(self) -> list[bytes]:
        """The device's key, context IV and RNG seed (for checks that they never leak)."""
        from . import keys as keymod

        key, iv = keymod.derive(self.registry.master(self.kid), self.kid)
        return [key, iv, self.registry.seed(self.kid)]

    # ---- per test --------------------------------------------------------------------------
    def begin(self) -> None:
        self.start()

    def end(self) -> None:
        if self._net_down and self.world is not None:
            self.world.inject("net", True)
            self._net_down = False


# ---- fixtures --------------------------------------------------------------------------------


class _Pool:
    def __init__(self, config: pytest.Config, root: Path) -> None:
        self.config = config
        self.root = root
        self.duts: dict[BoardSpec, Dut] = {}
        self.failed: dict[BoardSpec, str] = {}
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        from .registry import Registry

        if self._registry is None:
            self._registry = Registry.open(self.root / "registry.db")
        return self._registry

    def get(self, spec: BoardSpec) -> Dut:
        if spec in self.failed:
            pytest.fail(f"{spec.text}: bring-up failed earlier: {self.failed[spec]}", False)
        if spec not in self.duts:
            if spec.emulated:
                _require_engine()
            dut = Dut(spec, self.root / spec.id, self.config, self.registry)
            try:
                self.duts[spec] = dut.bring_up()
            except Exception as e:
                self.failed[spec] = str(e)
                dut.close()
                raise
        return self.duts[spec]

    def close(self) -> None:
        for d in self.duts.values():
            with contextlib.suppress(Exception):
                d.close()
        if self._registry is not None:
            self._registry.close()


def _require_engine() -> None:
    from . import paths
    from .errors import UserError

    try:
        paths.node_binary()
        paths.check_engine()
    except UserError as e:
        pytest.skip(f"emulated boards unavailable: {e}")


@pytest.fixture(scope="session")
def atsource_boards(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Pool]:
    """The session's boards, brought up (served, deployed, provisioned) on first use."""
    pool = _Pool(request.config, tmp_path_factory.mktemp("boards"))
    yield pool
    pool.close()


def _use(request: pytest.FixtureRequest, duts: list[Dut]) -> None:
    node = request.node
    if node.get_closest_marker("hardware") and any(d.emulated for d in duts):
        pytest.skip(_SKIP_HARDWARE.split(":")[0] + ": this one is emulated")
    if node.get_closest_marker("emulated_only") and not all(d.emulated for d in duts):
        pytest.skip(_SKIP_EMULATED)
    node.stash[_DUTS_KEY] = duts
    for d in duts:
        d.begin()
        d.log_start = max(0, len(d.log) - 20)  # a little context from before the test


@pytest.fixture
def dut(request: pytest.FixtureRequest, atsource_boards: _Pool) -> Iterator[Dut]:
    """The board under test (parametrized over ``--board``), its firmware restarted."""
    spec: BoardSpec = request.param
    d = atsource_boards.get(spec)
    _use(request, [d])
    yield d
    d.end()


@pytest.fixture
def duts(request: pytest.FixtureRequest, atsource_boards: _Pool) -> Iterator[list[Dut]]:
    """Every board given with ``--board``, at once."""
    specs = request.config.stash[_SPECS_KEY]
    if not specs:
        pytest.skip(_SKIP_NO_BOARD)
    ds = [atsource_boards.get(s) for s in specs]
    _use(request, ds)
    yield ds
    for d in ds:
        d.end()


# ---- reports -------------------------------------------------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    failed_before = item.stash.get(_FAILED_KEY, False)
    if report.failed:
        item.stash[_FAILED_KEY] = True
    # The failing phase's report shows the consoles in the terminal; JUnit XML takes captured
    # output from the teardown report only, so that one gets them too.
    if report.failed or (report.when == "teardown" and failed_before):
        for d in item.stash.get(_DUTS_KEY, []):
            report.sections.append(
                (f"Captured stdout {report.when}: console of {d.name}", _console_tail(d))
            )


_FAILED_KEY = pytest.StashKey[bool]()


def _console_tail(d: Dut) -> str:
    lines = d.log[d.log_start :]
    cut = len(lines) - CONSOLE_TAIL
    text = "\n".join(_printable(x) for x in lines[max(0, cut) :])
    if cut > 0:
        text = f"[{cut} earlier lines left out]\n" + text
    # JUnit XML joins the sections' texts without their titles: name the board in the text.
    return f"=== console of {d.name} ===\n{text}\n"


def _printable(line: str) -> str:
    # Raw-REPL control bytes make XML invalid and terminals odd.
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in line)


__all__ = [
    "BOOT_RE",
    "STREAMS",
    "BoardSpec",
    "Dut",
    "InjectableWorld",
    "board_specs",
    "parse_outbox",
    "hil_policy",
]
