"""An emulated board: the MicroPython VM (in Node) plus the board around it, on a virtual clock.

The VM asks for time (sleeps) and I/O; this side answers from the world model, delivers input
events at their timestamps, resets the chip when the firmware, the watchdog or a power cut
says so, and keeps the console. It never lets the VM read the wall clock: a simulated day
runs as fast as the firmware allows and is the same for a given seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import selectors
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..boards import Board, load_board
from ..boardtime import BoardClock, EmulatedPort
from ..errors import DeviceError, UserError
from . import netbridge
from .netbridge import NetBridge, NetError
from .node import NodeVM, VMExited
from .serialbus import UartPort, i2s_request
from .world_api import Event, World

CHUNK_US = 60_000_000  # at most this much simulated time per answer, to bound event batches
# A board's radio hands adverts over one at a time; a reply carrying thousands of them is an
# emulator artefact that fills the VM heap with one huge transient list (and, with a
# conservative GC, can leave some of it pinned when the live heap is measured). The span of
# simulated time per reply therefore adapts to keep batches near this many events.
BATCH_EVENTS = 64
# With lookahead the batch goes to the runner's queue, not into the VM heap (the VM gets what
# is due at each sleep, whatever the batch): bigger batches only save round trips.
BATCH_EVENTS_AHEAD = 1024
MIN_CHUNK_US = 50_000
IDLE_TICK_S = 1.0  # while idle at the REPL, deliver world events this often (wall seconds)
RELEASE = "1.29.0"
VERSION = "v1.29.0 on 2026-08-25"

# reset_cause() values per port for each way a board restarts. esp32 (ports/esp32/modmachine.c):
# machine.reset() is esp_restart(), ESP_RST_SW -> HARD_RESET (2); a soft reset reports
# SOFT_RESET (5). rp2 (ports/rp2/modmachine.c): machine.reset() is a watchdog reboot, so
# WDT_RESET (3); a soft reset leaves the chip's reset reason as it was (None: the last one).
CAUSES: dict[str, dict[str, int | None]] = {
    "esp32": {"power": 1, "hard": 2, "wdt": 3, "deepsleep": 4, "soft": 5, "reset": 2},
    "rp2": {"power": 1, "hard": 1, "wdt": 3, "deepsleep": 1, "soft": None, "reset": 3},
}
ESP32_ROM = {1: "POWERON_RESET", 3: "RTCWDT_SYS_RESET", 5: "DEEPSLEEP_RESET", 12: "SW_CPU_RESET"}


_GONE = object()  # an I/O request whose board reset or stopped while it waited

# One BLE advertising report on the wire (docs/emulator.md "Events on the wire"): time since
# boot (ms, us), addr_type, adv_type, rssi, the data's length, then the 6 address bytes and the
# data. Consecutive reports travel as one item, ["a", ms, us, hex of the records] (the time of
# the first), in a batch.
ADV_HEADER = struct.Struct("<IHBBbB")


class EmulatorError(DeviceError):
    """The emulated board failed in a way the firmware caused (heap budget, stall, crash)."""


@dataclass
class Reset:
    t_us: int
    kind: str  # power, hard, wdt, deepsleep, soft, reset


@dataclass
class RunStats:
    resets: list[Reset] = field(default_factory=list)
    heap_base: int = 0  # bytes the board layer itself holds in the VM's heap (not counted)
    heap_peak: int = 0  # bytes of live heap the firmware held after a step (stepped entry)
    heap_samples: int = 0
    heap_peak_t_us: int = 0
    requests: int = 0  # host round trips (requests the runner did not answer itself)
    i2c_local: int = 0  # I2C transfers the runner answered from a device snapshot
    events: int = 0
    wall_s: float = 0.0
    sim_us: int = 0
    frames: int = 0  # uplink frames the host link delivered (on_frame accepted them)
    frames_refused: int = 0  # host link sends that failed (network down, no taker, refused)


def fmt_time(t_us: int) -> str:
    return datetime.fromtimestamp(t_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


class EmulatedBoard:
    """One emulated board. Use ``run`` for a scenario, or ``serve`` behind a serial port."""

    def __init__(
        self,
        board: Board | str,
        flash_dir: Path,
        *,
        world: World | None = None,
        start_us: int | None = None,
        seed: int | None = None,
        speed: float | None = None,
        on_line: Callable[[int, str], None] | None = None,
        stall_timeout: float = 10.0,
        instance: str | None = None,
        enforce_heap: bool = True,
        entry: str | None = None,
        on_frame: Callable[[bytes], bool] | None = None,
        hosts: dict[str, str] | None = None,
        lookahead: bool = True,
        span_us: int = CHUNK_US,
    ) -> None:
        self.board = load_board(board) if isinstance(board, str) else board
        self.flash_dir = Path(flash_dir)
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        if world is None:
            from .bench import BenchWorld

            world = BenchWorld(self.board, start_us)
        self.world = world
        self.now_us = start_us if start_us is not None else world.start_us
        self.seed = seed
        self.speed = speed
        self.on_line = on_line
        # The host link (boards/emulator/rom/_vhostlink.py): frames the firmware sends go here;
        # True means delivered (the firmware may then forget the frame).
        self.on_frame = on_frame
        self.stall_timeout = stall_timeout
        self.enforce_heap = enforce_heap
        # None: run main.py as a board does. A module name (e.g. "sensor.app"): drive its
        # setup()/step() from the top level, where the engine collects garbage, so the live
        # heap is measured exactly (see docs/emulator.md).
        self.entry = entry
        self.instance = instance or self.flash_dir.resolve().name
        self.stats = RunStats()
        self.console = bytearray()  # every byte the board printed, for audits
        self.lines: list[tuple[int, str]] = []
        self.serial: Any = None  # a SerialBridge while serving a port
        self._vm: NodeVM | None = None
        self._state = "off"  # off, running, idle
        self._boot_us = 0
        self._boots = 0
        self._rtc_delta_us = self._rtc_power_on_us() - self.now_us  # RTC minus true time
        self._rtc_powered = False
        self._mode = "friendly"
        self._pending_input = bytearray()
        self._interrupt = False
        self._scan_end_us: int | None = None
        # Simulated time per sleep reply (adapts to BATCH_EVENTS; at most span_us).
        self._span_max_us = max(MIN_CHUNK_US, span_us)
        self._chunk_us = self._span_max_us
        # Lookahead (docs/emulator.md "The virtual clock"): on a fast run (no speed, no serial
        # port), a sleep reply carries the world's events up to a horizon beyond the wake-up,
        # and the VM sleeps on through them without asking. Needs a world that can say when
        # its next outage or power cut is and deal a new scan's adverts retroactively.
        # (Looked up on the class: a wrapper that forwards attributes to a scenario world may
        # have turns of its own, such as actions at set times, that it would not declare.)
        self.lookahead = lookahead and all(
            hasattr(type(world), m) for m in ("next_turn_after", "adverts_between")
        )
        self._sent_us = 0  # the furthest horizon sent to the running VM
        self._tls_most = 0  # TLS sessions open at most since the last heap report
        self._ahead: list[Event] = []  # events sent beyond the time the VM was let reach
        self._replay: list[Event] = []  # events a reset took back from a dead VM, in order
        self._net_up = True
        self._line_buf = b""
        self._last_cr = False
        self._off_until: int | None = None
        self._wake_cause = "power"
        self._idle_since_wall = 0.0
        self._idle_since_sim = 0
        self._last_msg_wall = 0.0
        self._board_clock: BoardClock | None = None
        self._end_us: int | None = None
        self._wall0 = 0.0
        self._sim0 = 0
        self._wdt_deadline_us: int | None = None
        self._last_idle_tick = 0.0
        self._stall_warned = False
        self._stopping = False
        self._commands: queue.Queue[Callable[[], None]] = queue.Queue()
        # The board's sockets, bridged to the host's loopback (netbridge.py); the serial port's
        # interrupt character (micropython.kbd_intr: -1 passes Ctrl-C through as data).
        self.net = NetBridge(hosts)
        self._last_cause_code = 1
        self._kbd_intr = 3
        self._uarts: dict[int, UartPort] = {}  # per boot: a reset empties the FIFOs

    def _cause_code(self, cause: str) -> int:
        code = CAUSES[self.board.port][cause]
        if code is None:
            return self._last_cause_code
        self._last_cause_code = code
        return code

    def _rtc_power_on_us(self) -> int:
        # Where the port's RTC starts after power loss: 2000-01-01 on esp32 (epoch 0), and
        # 2021-01-01 on rp2 (ports/rp2/main.c starts the AON timer there).
        return self.board.rtc_power_on_s * 1_000_000

    # ---- identity ---------------------------------------------------------------------------
    def _digest(self, label: str) -> bytes:
        return hashlib.sha256(f"{self.board.name}/{self.instance}/{label}".encode()).digest()

    def unique_id(self) -> bytes:
        d = self._digest("uid")
        return bytes([0x24, 0x0A, 0xC4]) + d[:3] if self.board.port == "esp32" else d[:8]

    def _cfg(self, cause: str) -> dict[str, Any]:
        uid = self.unique_id()
        if self.board.port == "esp32":
            wifi_mac, ble_mac = uid, uid[:5] + bytes([(uid[5] + 2) & 0xFF])
            hostname = "ESP32_" + uid[3:].hex().upper()
        else:
            wifi_mac = bytes([0x28, 0xCD, 0xC1]) + self._digest("mac")[:3]
            ble_mac = wifi_mac[:5] + bytes([(wifi_mac[5] + 1) & 0xFF])
            hostname = "PicoW"
        if self.seed is None:
            rng = os.urandom(32)
        else:
            rng = hashlib.sha256(f"{self.seed}/{self.instance}/{self._boots}".encode()).digest()
        return {
            "port": self.board.port,
            "board": self.board.name,
            "machine": self.board.machine,
            "fs_size": self.board.fs_size,
            "fs_block": self.board.fs_block_size,
            "heap_total": self.board.heap_total,
            "tls_heap": self.board.tls_heap,
            "ram_budget": self.board.ram_budget,
            "now": [0, 0],
            "uid": uid.hex(),
            "wifi_mac": wifi_mac.hex(),
            "ble_mac": ble_mac.hex(),
            "hostname": hostname,
            "cpu_hz": 160_000_000 if self.board.port == "esp32" else 125_000_000,
            "cause": self._cause_code(cause),
            "rng": rng.hex(),
            "rtc_us": self.now_us + self._rtc_delta_us,
            "epoch": self.board.epoch_year,
            "release": RELEASE,
            "version": VERSION,
        }

    # ---- power and resets -------------------------------------------------------------------
    def _boot(self, cause: str, mode: str = "friendly") -> None:
        if cause == "power" and not self._rtc_powered:
            self._rtc_delta_us = self._rtc_power_on_us() - self.now_us
            self._rtc_powered = True
        self._boots += 1
        self._boot_us = self.now_us
        self._scan_end_us = None
        self._wdt_deadline_us = None
        self._interrupt = False
        self._uarts = {}
        self.stats.resets.append(Reset(self.now_us, cause))
        if self.board.port == "esp32" and cause != "soft":
            code = {"power": 1, "wdt": 3, "deepsleep": 5}.get(cause, 12)
            rom = f"rst:0x{code:x} ({ESP32_ROM[code]}),boot:0x13 (SPI_FAST_FLASH_BOOT)\n"
            self._output(rom.encode())
        self._vm = NodeVM(self.board, self.flash_dir)
        self._vm.send({"c": "boot", "mode": mode, "cfg": self._cfg(cause), "entry": self.entry})
        self._mode = mode
        self._state = "running"
        self._last_msg_wall = self._board_s()

    def _kill(self) -> None:
        if self._vm is not None:
            self._vm.kill()
            self._vm = None
        if self._ahead:
            # Sent to the VM ahead of its clock and never seen: the world still holds them
            # (the next boot gets them as it would have without lookahead).
            taken = [ev for ev in self._ahead if ev[1] > self.now_us]
            self._replay = sorted(taken + self._replay, key=lambda ev: ev[1])
            self._ahead = []
        self._sent_us = self.now_us
        self.net.close_all()
        self._kbd_intr = 3
        self._state = "off"

    def power_cut(self, off_us: int = 0) -> None:
        """Cut power now: unflushed file data and RAM are lost; power returns after off_us."""
        self._kill()
        self._rtc_powered = False
        self._off_until = self.now_us + off_us

    def _restart(self, cause: str, mode: str = "friendly") -> None:
        self._kill()
        self._boot(cause, mode)

    # ---- console ----------------------------------------------------------------------------
    def _output(self, data: bytes) -> None:
        self.console += data
        if self.serial is not None:
            self.serial.write(self._to_serial(data))
        buf = self._line_buf + data
        *done, self._line_buf = buf.split(b"\n")
        for raw in done:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.lines.append((self.now_us, line))
            if self.on_line is not None:
                self.on_line(self.now_us, line)

    def _to_serial(self, data: bytes) -> bytes:
        # A board's console ends lines with CR LF; the VM prints a bare LF from print().
        out = bytearray()
        for b in data:
            if b == 10 and not self._last_cr:
                out += b"\r"
            out.append(b)
            self._last_cr = b == 13
        return bytes(out)

    # ---- serial input -----------------------------------------------------------------------
    def feed_input(self, data: bytes) -> None:
        """Bytes typed on the board's serial port."""
        for b in data:
            if b == self._kbd_intr and self._state == "running":
                # Ctrl-C raises KeyboardInterrupt in running code; it is not queued as input.
                self._interrupt = True
            else:
                self._pending_input.append(b)

    # ---- the clock --------------------------------------------------------------------------
    def _since_boot(self, t_us: int) -> list[int]:
        d = max(0, t_us - self._boot_us)
        return [d // 1000, d % 1000]

    def _vm_time(self, q: dict[str, Any]) -> None:
        now = q.get("now")
        if now is not None:
            t = self._boot_us + now[0] * 1000 + now[1]
            if t > self.now_us:
                self.now_us = t
        if "wd" in q:  # the watchdog's deadline (ms since boot), as the VM knows it now
            self._wdt_deadline_us = self._boot_us + q["wd"] * 1000

    def _wall_deadline(self, target_us: int) -> float | None:
        if not self.speed:
            return None
        return self._wall0 + (target_us - self._sim0) / 1e6 / self.speed

    def _sim_at_wall(self, wall: float) -> int:
        assert self.speed
        return self._sim0 + int((wall - self._wall0) * 1e6 * self.speed)

    # ---- the main loop ----------------------------------------------------------------------
    def run(self, duration_us: int | None = None, until_us: int | None = None) -> RunStats:
        """Power on (if off) and run until the simulated time reaches the end."""
        if until_us is None:
            until_us = self.now_us + duration_us if duration_us is not None else None
        self._end_us = until_us
        return self._loop()

    def serve(self, bridge: Any, until_us: int | None = None) -> RunStats:
        """Run behind a serial port until ``stop()`` (or the end time)."""
        self.serial = bridge
        self._end_us = until_us
        return self._loop()

    def stop(self) -> None:
        self._stopping = True

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the loop's thread (for tests driving a board served in a thread)."""
        self._commands.put(fn)

    def _run_commands(self) -> None:
        while not self._commands.empty():
            self._commands.get_nowait()()

    def _loop(self) -> RunStats:
        wall_start = time.monotonic()
        sim_start = self.now_us
        self._wall0, self._sim0 = wall_start, sim_start
        self._stopping = False
        try:
            if self._state == "off" and self._off_until is None:
                self._boot("power")
            while not self._stopping:
                self._run_commands()
                if self._state == "off":
                    if not self._power_off_wait():
                        break
                    continue
                if (
                    self._end_us is not None
                    and self.now_us >= self._end_us
                    and (self._state == "idle")
                ):
                    break
                self._step()
        finally:
            if self._stopping or self._state != "off":
                self._shutdown()
            self.stats.wall_s += time.monotonic() - wall_start
            self.stats.sim_us += self.now_us - sim_start
        return self.stats

    def _power_off_wait(self) -> bool:
        target = self._off_until if self._off_until is not None else self._end_us
        if target is None:
            return False
        if self._end_us is not None and target >= self._end_us:
            self._discard_events(self._end_us)
            self.now_us = max(self.now_us, self._end_us)
            return False
        self._wait_until(target)
        self._discard_events(target)
        self.now_us = max(self.now_us, target)
        self._off_until = None
        cause, self._wake_cause = self._wake_cause, "power"
        self._boot(cause)
        return True

    def _world_events(self, t_us: int) -> list[Event]:
        """Events up to t_us: those a reset took back first, then the world's."""
        if not self._replay:
            return self.world.events_until(t_us)
        n = 0
        while n < len(self._replay) and self._replay[n][1] <= t_us:
            n += 1
        back, self._replay = self._replay[:n], self._replay[n:]
        return back + self.world.events_until(t_us)

    def _discard_events(self, t_us: int) -> None:
        for ev in self._world_events(t_us):
            if ev[0] == "net":
                self._set_net(bool(ev[2]))

    def _set_net(self, up: bool) -> None:
        self._net_up = up
        if not up:
            self.net.drop_connections()

    def _wait_until(self, target_us: int) -> bool:
        """Pace to wall time (if a speed is set) while serving the serial port.

        Returns True if interrupted early by Ctrl-C.
        """
        deadline = self._wall_deadline(target_us)
        while True:
            now = time.monotonic()
            if self._interrupt or self._stopping:
                return True
            if deadline is None or now >= deadline:
                return False
            self._poll_serial(min(deadline - now, 0.05))

    def _poll_serial(self, timeout: float) -> None:
        if self.serial is None:
            if timeout > 0:
                time.sleep(timeout)
            return
        data = self.serial.poll(timeout)
        if data:
            self.feed_input(data)

    def _step(self) -> None:
        vm = self._vm
        assert vm is not None
        if self._state == "idle":
            self._idle_step(vm)
            return
        if self.serial is not None and self.serial.backlogged():
            # Somebody has the port open but has not read what the board printed: the board
            # waits for them (its output pipe fills and blocks the VM), nothing is dropped.
            self.serial.wait_writable(0.05)
            self._poll_serial(0)
            self._last_msg_wall = self._board_s()
            return
        try:
            msgs = vm.read_available()
        except VMExited as e:
            self._vm_exited(e)
            return
        if not msgs:
            self._wait_vm(vm)
            return
        self._last_msg_wall = self._board_s()
        self._stall_warned = False
        for msg in msgs:
            if self._vm is not vm or self._state == "off":
                return
            self._handle(vm, msg)

    def _board_s(self) -> float:
        # The stall guard counts board time (boardtime.py): wall time less the time this
        # engine's thread and its VM waited for a CPU, so a busy machine is no stall.
        tid = threading.get_native_id()  # the thread stepping the engine (it may change)
        c = self._board_clock
        if c is None or c.emulated is None or c.emulated.tid != tid:
            me = EmulatedPort("", os.getpid(), tid, str(self.flash_dir))
            if c is None or c.emulated is not None:  # (no schedstat here: keep the wall clock)
                self._board_clock = c = BoardClock(me)
        return c.now()

    def _wait_vm(self, vm: NodeVM) -> None:
        # Wait for the VM, serving the serial port meanwhile; a VM that says nothing for too
        # long is stuck in a loop that never reaches the board layer.
        if self.serial is not None:
            sel = selectors.DefaultSelector()
            sel.register(vm.stdout, selectors.EVENT_READ)
            for f in self.serial.fileobjs():
                sel.register(f, selectors.EVENT_READ)
            sel.select(0.1)
            sel.close()
            data = self.serial.poll(0)
            if data:
                self.feed_input(data)
        else:
            vm.wait_readable(0.5)
        if self._board_s() - self._last_msg_wall > self.stall_timeout:
            self._stalled()

    def _stalled(self) -> None:
        if self._wdt_deadline_us is not None:
            # The watchdog would have fired: the loop never fed it.
            self.now_us = max(self.now_us, self._wdt_deadline_us)
            self._restart("wdt")
            return
        if self.serial is not None:
            if not self._stall_warned:
                self._stall_warned = True
                self._note("firmware busy without calling the board layer (Ctrl-C resets)")
            if self._interrupt:
                self._restart("hard")
            return
        self._kill()
        raise EmulatorError(
            f"{self.board.name}: firmware stalled: no call to the board layer for "
            f"{self.stall_timeout:g} s of board time at {fmt_time(self.now_us)} "
            "(a loop that never sleeps?)"
        )

    def _note(self, text: str) -> None:
        if self.on_line is not None:
            self.on_line(self.now_us, f"[emulator] {text}")

    def _idle_step(self, vm: NodeVM) -> None:
        if self._pending_input:
            data = bytes(self._pending_input)
            self._pending_input.clear()
            self._advance_idle()
            vm.send(
                {"c": "chars", "d": data.decode("latin1"), "now": self._since_boot(self.now_us)}
            )
            self._state = "running"
            self._last_msg_wall = self._board_s()
            return
        if self.serial is None:
            # Nothing will type at this REPL: the board sits idle until the end of the run.
            if self._end_us is None:
                self._stopping = True
                return
            self._discard_events(self._end_us)
            self.now_us = max(self.now_us, self._end_us)
            return
        self._poll_serial(0.05)
        self._advance_idle()
        if self._end_us is not None and self.now_us >= self._end_us:
            return
        if time.monotonic() - self._last_idle_tick >= IDLE_TICK_S:
            self._last_idle_tick = time.monotonic()
            vm.send({"c": "tick", "now": self._since_boot(self.now_us)})
            self._state = "running"
            self._last_msg_wall = self._board_s()

    def _advance_idle(self) -> None:
        # At the REPL a board's clock runs with the wall clock (times the speed, if any).
        wall = time.monotonic()
        rate = self.speed or 1.0
        t = self._idle_since_sim + int((wall - self._idle_since_wall) * 1e6 * rate)
        if self._end_us is not None:
            t = min(t, self._end_us)
        self.now_us = max(self.now_us, t)

    def _vm_exited(self, e: VMExited) -> None:
        self._kill()
        raise EmulatorError(f"{self.board.name}: the emulated chip crashed: {e}")

    # ---- requests ---------------------------------------------------------------------------
    def _handle(self, vm: NodeVM, msg: dict[str, Any]) -> None:
        if "o" in msg:
            self._output(msg["o"].encode("latin1"))
        elif "q" in msg:
            self.stats.requests += 1
            self._vm_time(msg)
            reply = self._request(msg)
            if reply is not None and self._vm is vm:
                vm.send_line(reply)
            # A request may wait on the outside world (stdin, a socket): that is not the
            # firmware stalling.
            self._last_msg_wall = self._board_s()
        elif "i2c" in msg:
            self._i2c_replay(msg["i2c"])
        elif "kbd" in msg:
            self._kbd_intr = int(msg["kbd"])
        elif "idle" in msg:
            self._state = "idle"
            self._interrupt = False
            self._idle_since_wall = time.monotonic()
            self._idle_since_sim = self.now_us
            self._last_idle_tick = time.monotonic()
        elif "reboot" in msg:
            rest = msg.get("rest", "").encode("latin1")
            self._kill()
            self._pending_input[:0] = rest
            self._boot("soft", msg.get("mode", "friendly"))
        elif "fatal" in msg:
            self._kill()
            raise EmulatorError(f"{self.board.name}: emulator failure: {msg['fatal']}")

    def _request(self, q: dict[str, Any]) -> str | None:
        op = q["q"]
        handler = getattr(self, "_q_" + op, None)
        if handler is None:
            return json.dumps(None)
        return handler(q)

    def _q_ready(self, q: dict[str, Any]) -> str:
        self.stats.heap_base = int(q.get("heap_base", 0))
        return "{}"

    def _q_repl(self, q: dict[str, Any]) -> str:
        return "{}"

    def _q_sleep(self, q: dict[str, Any]) -> str | None:
        target = self._boot_us + q["ms"] * 1000 + q["us"]
        if "h" in q:
            self._heap_sample(q["h"], q.get("hn", 1))
        if self._ahead:
            self._ahead = [ev for ev in self._ahead if ev[1] > self.now_us]
        if self._end_us is not None and target > self._end_us and self.serial is None:
            # The run ends during this sleep: the firmware is stopped here.
            self._discard_events(self._end_us)
            self.now_us = self._end_us
            self._shutdown()
            self._stopping = True
            return None
        ahead = self.lookahead and self.speed is None and self.serial is None
        horizon = self._horizon(target) if ahead else min(target, self.now_us + self._chunk_us)
        if self._end_us is not None:
            horizon = min(horizon, max(self._end_us, self.now_us))
        reached = min(target, horizon)
        interrupted = self._wait_until(reached)
        if interrupted and self.speed:
            reached = max(self.now_us, min(reached, self._sim_at_wall(time.monotonic())))
        elif interrupted:
            reached = self.now_us
        if interrupted or not ahead:
            horizon = reached
        horizon = max(horizon, self._sent_us)  # what the VM already holds stays known
        if self._wdt_deadline_us is not None and self._wdt_deadline_us < reached:
            self._discard_events(self._wdt_deadline_us)
            self.now_us = max(self.now_us, self._wdt_deadline_us)
            self._restart("wdt")
            return None
        raw = self._world_events(horizon)
        events, cut = self._encode(raw, horizon)
        if cut is not None:
            t_cut, off_us = cut
            self.now_us = t_cut
            self.power_cut(off_us)
            return None
        span = horizon - self.now_us
        batch = BATCH_EVENTS_AHEAD if ahead else BATCH_EVENTS
        if len(events) > batch and span > 0:
            self._chunk_us = max(MIN_CHUNK_US, span * batch // len(events))
        elif len(events) < batch // 4:
            self._chunk_us = min(self._span_max_us, self._chunk_us * 2)
        self.now_us = max(self.now_us, reached)
        due, later = events, ""
        if horizon > self.now_us:
            self._ahead += [ev for ev in raw if ev[1] > self.now_us]
            m, u = self._since_boot(self.now_us)
            n = len(events)
            while n and (events[n - 1][1] > m or (events[n - 1][1] == m and events[n - 1][2] > u)):
                n -= 1
            if n < len(events):
                due = events[:n]
                later = json.dumps(_wire(events[n:]), separators=(",", ":"))
        self._sent_us = max(self._sent_us, horizon)
        ans = json.dumps(
            [*self._since_boot(self.now_us), _wire(due), *self._since_boot(horizon), later],
            separators=(",", ":"),
        )
        if self._interrupt:
            self._interrupt = False
            return "!" + ans
        return ans

    def _horizon(self, target_us: int) -> int:
        """How far the world may be dealt ahead: a chunk, but never past the next outage or
        power cut unless the sleep itself reaches it (the engine acts on those when it deals
        them: a link goes down, the VM is stopped)."""
        h = self.now_us + self._chunk_us
        turn = self.world.next_turn_after(self.now_us)  # type: ignore[attr-defined]
        if turn is not None and turn < h:
            h = turn if turn <= target_us else turn - 1
        return max(h, self.now_us)

    _q_lightsleep = _q_sleep

    def _q_events(self, q: dict[str, Any]) -> str | None:
        events, cut = self._events(self.now_us)
        if cut is not None:
            self.now_us = cut[0]
            self.power_cut(cut[1])
            return None
        return json.dumps([*self._since_boot(self.now_us), _wire(events)], separators=(",", ":"))

    def _events(self, until_us: int) -> tuple[list[list[Any]], tuple[int, int] | None]:
        """World events up to until_us, encoded for the VM; stops at a power cut."""
        return self._encode(self._world_events(until_us), until_us)

    def _encode(
        self, raw: list[Event], until_us: int
    ) -> tuple[list[list[Any]], tuple[int, int] | None]:
        """Events encoded for the VM, with the end of a timed scan; stops at a power cut."""
        out: list[list[Any]] = []
        scan_end = self._scan_end_us
        boot, pack = self._boot_us, ADV_HEADER.pack
        for ev in raw:
            t = ev[1]
            if scan_end is not None and scan_end <= t:
                out.append(["d", *self._since_boot(scan_end)])
                scan_end = self._scan_end_us = None
            kind = ev[0]
            if kind == "adv":  # most events on a busy day: _advert, inlined
                ms, us = divmod(max(0, t - boot), 1000)
                data = ev[6]
                out.append(
                    ["a", ms, us, pack(ms, us, ev[2], ev[4], ev[5], len(data)) + ev[3] + data]
                )
            elif kind == "pin":
                out.append(["p", *self._since_boot(t), ev[2], ev[3]])
            elif kind == "net":
                self._set_net(bool(ev[2]))
                out.append(["n", *self._since_boot(t), 1 if ev[2] else 0])
            elif kind == "power":
                # Everything after the cut never happens for this boot.
                self._discard_events(until_us)
                return out, (t, ev[2])
        if scan_end is not None and scan_end <= until_us:
            out.append(["d", *self._since_boot(scan_end)])
            self._scan_end_us = None
        self.stats.events += len(out)
        return out, None

    def _advert(self, ev: Event) -> list[Any]:
        """["a", ms, us, record]: one report, packed for the wire (ADV_HEADER)."""
        d = max(0, ev[1] - self._boot_us)
        ms, us = d // 1000, d % 1000
        data = ev[6]
        rec = ADV_HEADER.pack(ms, us, ev[2], ev[4], ev[5], len(data)) + ev[3] + data
        return ["a", ms, us, rec]

    def _heap_sample(self, h: int, n: int = 1) -> None:
        self.stats.heap_samples += n
        if h > self.stats.heap_peak:
            self.stats.heap_peak = h
            self.stats.heap_peak_t_us = self.now_us
        # The port's TLS stack on the same heap (board tls_heap, rp2) is allowed on top, for
        # each session open since the last report: the budget is the firmware's.
        budget = self.board.ram_budget + self.board.tls_heap * self._tls_most
        self._tls_most = self.net.tls_open()
        if self.enforce_heap and h > budget:
            self._kill()
            raise EmulatorError(
                f"{self.board.name}: firmware heap {h} bytes exceeds the board's RAM budget of "
                f"{budget} bytes at {fmt_time(self.now_us)}"
            )

    def _q_pin(self, q: dict[str, Any]) -> str:
        return json.dumps(self.world.pin_level(q["pin"], self.now_us))

    def _q_i2c(self, q: dict[str, Any]) -> str:
        w, n = bytes.fromhex(q["w"]), q["r"]
        # Bus time: address byte plus data bytes, 9 clocks each, at the bus frequency.
        cost = (1 + len(w) + (1 + n if n else 0)) * 9 * 1_000_000 // max(1, q.get("f", 100000))
        ok, data = self._i2c(q["b"], q["a"], w, n, self.now_us)
        ans = json.dumps([1, data.hex(), cost]) if ok else json.dumps([0, "", cost])
        if not (self.lookahead and self.speed is None and self.serial is None):
            return ans
        # With lookahead, the runner answers the device's next transfers itself while they
        # only read it (or write ctrl_hum or config): the answer carries what the device will
        # say, after a tab (docs/emulator.md "I2C").
        dev = self.world.i2c_device(q["b"], q["a"])
        snapshot = getattr(dev, "snapshot", None)
        snap = snapshot(self.now_us) if snapshot is not None and ok else None
        if snap is None:
            return ans
        wire: dict[str, Any] = {"r": snap["regs"].hex(), "p": snap["pointer"]}
        if "end_us" in snap:
            wire["e"] = self._since_boot(snap["end_us"])
            wire["d"] = snap["data"].hex()
            wire["m"] = snap["ctrl_meas"]
        if snap["nvm_until_us"] > self.now_us:
            wire["v"] = self._since_boot(snap["nvm_until_us"])
        if snap.get("until_us") is not None:
            wire["u"] = self._since_boot(snap["until_us"])
        return ans + "\t" + json.dumps(wire, separators=(",", ":"))

    def _i2c(self, bus: int, addr: int, w: bytes, n: int, t_us: int) -> tuple[bool, bytes]:
        """One transfer at t_us: (acknowledged, bytes read)."""
        dev = self.world.i2c_device(bus, addr)
        present_at = getattr(dev, "present_at", None)
        if dev is None or not (present_at(t_us) if present_at else dev.present):
            return False, b""
        try:
            if w:
                dev.write(w, t_us)
            data = dev.read(n, t_us) if n else b""
        except OSError:
            return False, b""  # the device let go of the bus: a NACK
        return True, data

    def _i2c_replay(self, log: list[list[Any]]) -> None:
        """Transfers the runner answered from a snapshot: the device sees them now, each at
        its own time, so its state is what it would have been."""
        for bus, addr, ms, us, w, n in log:
            t = self._boot_us + ms * 1000 + us
            self.now_us = max(self.now_us, t)
            self._i2c(bus, addr, bytes.fromhex(w), n, t)
            self.stats.i2c_local += 1

    def _q_i2cscan(self, q: dict[str, Any]) -> str:
        found = []
        for addr in range(0x08, 0x78):
            dev = self.world.i2c_device(q["b"], addr)
            if dev is not None and dev.present:
                found.append(addr)
        return json.dumps(found)

    def _q_i2s(self, q: dict[str, Any]) -> str:
        return i2s_request(self.world, q, self.now_us)

    def _q_uart(self, q: dict[str, Any]) -> str:
        port = self._uarts.get(q["id"])
        if port is None:
            get = getattr(self.world, "uart_device", None)
            port = self._uarts[q["id"]] = UartPort(get(q["id"]) if get is not None else None)
        return port.request(q, self.now_us, self._boot_us)

    def _q_adc(self, q: dict[str, Any]) -> str:
        read = getattr(self.world, "adc", None)
        return json.dumps(read(q["pin"], self.now_us) if read else 32768)

    def _q_scan(self, q: dict[str, Any]) -> str:
        # The answer: events for the VM's queue. Adverts already dealt ahead for the scan
        # that ends here never arrive (the VM drops them too); a stop ends with SCAN_DONE at
        # once; a new scan's adverts up to the horizon already dealt are dealt now.
        now = self.now_us
        self._ahead = [ev for ev in self._ahead if ev[0] != "adv" or ev[1] < now]
        if q.get("stop"):
            self.world.ble_scan_stop(now)
            self._scan_end_us = None
            return json.dumps([["d", *self._since_boot(now)]])
        d = q["d"] * 1000
        self.world.ble_scan(now, d, q["i"], q["w"])
        self._scan_end_us = now + d if d else None
        if self._sent_us <= now:
            return "[]"
        raw = self.world.adverts_between(now, self._sent_us)  # type: ignore[attr-defined]
        self._ahead = sorted(self._ahead + raw, key=lambda ev: ev[1])
        out = [self._advert(ev) for ev in raw]
        if self._scan_end_us is not None and self._scan_end_us <= self._sent_us:
            out.append(["d", *self._since_boot(self._scan_end_us)])
            self._scan_end_us = None
        self.stats.events += len(out)
        return json.dumps(_wire(out), separators=(",", ":"))

    def _q_wdt(self, q: dict[str, Any]) -> str:
        self._wdt_deadline_us = self._boot_us + q["w"] * 1000
        return "{}"

    def _q_rtc(self, q: dict[str, Any]) -> str:
        self._rtc_delta_us = q["us"] - self.now_us
        return "{}"

    def _q_ntp(self, q: dict[str, Any]) -> str:
        return json.dumps(self.now_us)

    def _q_link(self, q: dict[str, Any]) -> str:
        # One uplink frame over the host link. It fails while the world's network is down (a
        # scenario outage), as the board's real uplink would.
        ok = False
        if self.on_frame is not None and self._net_up:
            try:
                frame = bytes.fromhex(q["f"])
            except (KeyError, TypeError, ValueError):
                frame = None
            ok = frame is not None and bool(self.on_frame(frame))
        if ok:
            self.stats.frames += 1
        else:
            self.stats.frames_refused += 1
        return "true" if ok else "false"

    # ---- serial input and sockets for running code (sys.stdin, select, socket, ssl) ---------
    def _q_stdin(self, q: dict[str, Any]) -> str | None:
        # The VM's own stdin (sys.stdin) wants bytes: up to n, at least one (it waits). The
        # answer is the bytes alone: the VM is inside a read, where no handler may run, so
        # world events wait for its next board-layer call.
        if not self._pending_input and self.serial is None:
            # Nothing will ever type: the board waits here until the run ends.
            if self._end_us is not None:
                self._discard_events(self._end_us)
                self.now_us = max(self.now_us, self._end_us)
            self._shutdown()
            self._stopping = True
            return None
        self._io_wait([["in", 1]], -1)
        data = bytes(self._pending_input[: int(q["n"])])
        del self._pending_input[: len(data)]
        if self._interrupt:
            self._interrupt = False
            return "!" + data.hex()
        return data.hex()

    def _q_io(self, q: dict[str, Any]) -> str | None:
        op = q["op"]
        try:
            result = getattr(self, "_io_" + op)(q)
        except NetError as e:
            return self._io_answer({"e": e.code})
        except (KeyError, TypeError, ValueError, AttributeError):
            return self._io_answer({"e": 22})  # EINVAL: a request this side cannot read
        if result is _GONE:
            return None
        return self._io_answer({"r": result})

    def _io_answer(self, result: dict[str, Any]) -> str | None:
        """The answer to an I/O request: world events up to now (as a sleep), then the result."""
        events, cut = self._events(self.now_us)
        if cut is not None:
            self.now_us = cut[0]
            self.power_cut(cut[1])
            return None
        if self._wdt_deadline_us is not None and self._wdt_deadline_us < self.now_us:
            self._restart("wdt")  # blocked on I/O without feeding the watchdog
            return None
        ans = json.dumps(
            [*self._since_boot(self.now_us), _wire(events), result], separators=(",", ":")
        )
        if self._interrupt:
            self._interrupt = False
            return "!" + ans
        return ans

    def _ready(self, want: list[list[Any]], timeout: float) -> list[list[Any]]:
        """Which of want ([id, POLLIN|POLLOUT]) is ready, waiting up to timeout wall seconds
        for a socket or the serial port."""
        sel = selectors.DefaultSelector()
        try:
            for f in self.serial.fileobjs() if self.serial is not None else []:
                sel.register(f, selectors.EVENT_READ, None)
            socks: dict[Any, int] = {}
            for sid, mask in want:
                f = self.net.fileobj(sid)
                if f is None:
                    continue
                ev = (selectors.EVENT_READ if mask & 1 else 0) | (
                    selectors.EVENT_WRITE if mask & 4 else 0
                )
                if ev:
                    sel.register(f, ev, sid)
                    socks[sid] = 0
            quick = any(sid == "in" and self._pending_input for sid, _ in want) or any(
                self.net.pending(sid) for sid in socks
            )
            got = sel.select(0 if quick else timeout) if sel.get_map() else []
            if not sel.get_map() and not quick and timeout > 0:
                time.sleep(timeout)
            for key, ev in got:
                if key.data is None:
                    continue
                socks[key.data] |= (1 if ev & selectors.EVENT_READ else 0) | (
                    4 if ev & selectors.EVENT_WRITE else 0
                )
        finally:
            sel.close()
        if self.serial is not None:
            data = self.serial.poll(0)
            if data:
                self.feed_input(data)
        out: list[list[Any]] = []
        for sid, mask in want:
            if sid == "in":
                if mask & 1 and self._pending_input:
                    out.append(["in", 1])
            elif sid in socks:
                ev = socks[sid] | (1 if self.net.pending(sid) else 0)
                if ev & mask:
                    out.append([sid, ev & mask])
            else:
                out.append([sid, 8])  # POLLERR: not an open socket
        return out

    def _io_wait(self, want: list[list[Any]], timeout_ms: int) -> list[list[Any]] | None:
        """Wait until something in want is ready, the timeout passes, or Ctrl-C.

        A socket's peer is a real server and the serial port a real user, so this waits in
        wall time (a timeout of T ms waits at most T ms); the virtual clock moves on by the
        time waited, times the run's speed, never past the timeout. With nothing real to wait
        for, the timeout passes at once. Returns the ready list ([] on timeout), or None when
        the run ended meanwhile.
        """
        limit_us = timeout_ms * 1000 if timeout_ms >= 0 else None
        real = self.serial is not None or any(self.net.fileobj(sid) for sid, _ in want)
        if not real:
            ready = self._ready(want, 0)
            if not ready and limit_us is not None:
                self.now_us += limit_us
            return ready
        rate = self.speed or 1.0
        t0, sim0 = time.monotonic(), self.now_us
        while True:
            left = None if limit_us is None else limit_us / 1e6 - (time.monotonic() - t0)
            ready = self._ready(want, 0.05 if left is None else max(0.0, min(0.05, left)))
            spent = int((time.monotonic() - t0) * 1e6 * rate)
            if limit_us is not None:
                spent = min(spent, limit_us)
            self.now_us = max(self.now_us, sim0 + spent)
            if ready:
                return ready
            if self._interrupt or self._stopping:
                return []
            if left is not None and left <= 0:
                self.now_us = max(self.now_us, sim0 + limit_us)  # type: ignore[operator]
                return []
            if self._end_us is not None and self.now_us >= self._end_us and self.serial is None:
                return []

    def _io_poll(self, q: dict[str, Any]) -> Any:
        want = [[w[0], int(w[1])] for w in q["f"]]
        got = self._io_wait(want, int(q["t"]))
        return _GONE if got is None else got

    def _net_check(self) -> None:
        if not self._net_up:
            raise NetError(netbridge.EHOSTUNREACH)

    def _io_dns(self, q: dict[str, Any]) -> str:
        if not self._net_up:
            raise NetError(netbridge.EAI_FAIL)
        return self.net.resolve(str(q["h"]))

    def _io_open(self, q: dict[str, Any]) -> int:
        return self.net.open(int(q["t"]))

    def _wait_sock(self, sid: int, mask: int, timeout_ms: int) -> None:
        if not self._io_wait([[sid, mask]], timeout_ms):
            raise NetError(netbridge.EAGAIN if timeout_ms == 0 else netbridge.ETIMEDOUT)

    def _io_connect(self, q: dict[str, Any]) -> None:
        self._net_check()
        sid = q["s"]
        self.net.start_connect(sid, q["a"])
        self._wait_sock(sid, 4, int(q["t"]))
        self.net.finish_connect(sid)

    def _io_tls(self, q: dict[str, Any]) -> None:
        self._net_check()
        sid = q["s"]
        ca = bytes.fromhex(q["ca"]) if q.get("ca") else None
        self.net.start_tls(sid, int(q["v"]), ca, q.get("h"))
        self._tls_most = max(self._tls_most, self.net.tls_open())
        while not self.net.handshake(sid):
            self._wait_sock(sid, 1, int(q["t"]))

    def _io_send(self, q: dict[str, Any]) -> int:
        sid, data = q["s"], bytes.fromhex(q["d"])
        if not data:
            return 0
        while True:
            n = self.net.send(sid, data)
            if n:
                return n
            self._wait_sock(sid, 4, int(q["t"]))

    def _io_recv(self, q: dict[str, Any]) -> str:
        sid = q["s"]
        while True:
            data = self.net.recv(sid, int(q["n"]))
            if data is not None:
                return data.hex()
            self._wait_sock(sid, 1, int(q["t"]))

    def _io_sendto(self, q: dict[str, Any]) -> int:
        self._net_check()
        return self.net.sendto(q["s"], bytes.fromhex(q["d"]), q["a"])

    def _io_recvfrom(self, q: dict[str, Any]) -> Any:
        sid = q["s"]
        while True:
            got = self.net.recvfrom(sid, int(q["n"]))
            if got is not None:
                return got
            self._wait_sock(sid, 1, int(q["t"]))

    def _io_bind(self, q: dict[str, Any]) -> None:
        self.net.bind(q["s"], q["a"])

    def _io_listen(self, q: dict[str, Any]) -> None:
        self.net.listen(q["s"], int(q["n"]))

    def _io_accept(self, q: dict[str, Any]) -> Any:
        self._wait_sock(q["s"], 1, int(q["t"]))
        return self.net.accept(q["s"])

    def _io_close(self, q: dict[str, Any]) -> None:
        self.net.close(q["s"])

    def _q_reset(self, q: dict[str, Any]) -> None:
        self._restart("reset")

    def _q_deepsleep(self, q: dict[str, Any]) -> None:
        self._kill()
        ms = q.get("ms")
        self._off_until = self.now_us + ms * 1000 if ms is not None else None
        if self._off_until is None:
            self._stopping = True
        self._wake_cause = "deepsleep"

    def _q_bootloader(self, q: dict[str, Any]) -> None:
        # The chip now waits for a new image: silent on this port until power-cycled.
        self._kill()
        self._note("entered the bootloader")
        self._stopping = True

    # ---- shutdown ---------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """A clean stop: files are closed and flushed, as when unplugged from a REPL."""
        vm = self._vm
        if vm is None:
            self._state = "off"
            return
        if self._state == "idle":
            try:
                vm.send({"c": "exit"})
                vm.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - any failure here ends in a kill below
                pass
        elif self._state == "running":
            # Mid-request: the VM is waiting for an answer; "X" flushes and exits.
            try:
                vm.send_line("X")
                vm.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                pass
        self._kill()

    def close(self) -> None:
        self._shutdown()

    def __enter__(self) -> EmulatedBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wire(events: list[list[Any]]) -> list[Any]:
    """Events as they cross to the VM: each run of adverts becomes one item,
    ["a", ms, us, hex of the records], timed as its first."""
    out: list[Any] = []
    run: list[Any] = []
    for ev in events:
        if ev[0] == "a":
            if not run:
                run = ["a", ev[1], ev[2], []]
                out.append(run)
            run[3].append(ev[3])
            continue
        if run:
            run[3] = b"".join(run[3]).hex()
            run = []
        out.append(ev)
    if run:
        run[3] = b"".join(run[3]).hex()
    return out


def parse_duration(text: str) -> int:
    """'24h', '90m', '30s', '2d', '1h30m' -> microseconds."""
    import re

    total = 0.0
    pos = 0
    for m in re.finditer(r"\s*(\d+(?:\.\d+)?)\s*([dhms])", text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1}[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise UserError(f"bad duration '{text}': use e.g. 24h, 90m, 30s, 1h30m")
    return int(total * 1_000_000)
