"""The Node process that runs one board's MicroPython VM (boards/emulator/runner.mjs)."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .. import paths
from ..boards import Board


def _die_with_parent() -> None:
    # The VM dies with the emulator, whatever ends it (SIGTERM, SIGKILL, a crash): a VM stuck
    # in a loop that never reads its pipe would otherwise spin on, orphaned (Linux: prctl
    # PR_SET_PDEATHSIG; elsewhere the pipe closing ends it at its next request).
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


# What the board layer's own modules hold in the VM's heap (about 34 KB, measured at boot),
# with room to spare: on a real board that part is C code, outside the heap.
BOARD_LAYER_HEAP = 48 * 1024


def initial_heap(board: Board) -> int:
    """The VM's heap sized like the board's: what MicroPython has after boot on a real board
    plus the board layer. Measuring the live heap (gc.mem_alloc) walks the whole heap's
    allocation table, once per step of the firmware: at 1 MB that cost 0.5-0.7 ms a step, most
    of an idle board's day. The engine grows its heap by itself when a step needs more (the
    WebAssembly port's split heap, MICROPY_GC_SPLIT_HEAP_AUTO in ports/webassembly), so a step
    that allocates past the board's size still runs; the RAM budget is checked on the live
    heap, not here."""
    return -(-(board.heap_total + BOARD_LAYER_HEAP) // 4096) * 4096


class VMExited(Exception):
    """The VM process ended (a reset it asked for, or a crash: see ``stderr``)."""

    def __init__(self, stderr: str) -> None:
        super().__init__(stderr.strip().splitlines()[-1] if stderr.strip() else "VM exited")
        self.stderr = stderr


class NodeVM:
    """One MicroPython VM in its own Node process, spoken to in JSON lines."""

    def __init__(self, board: Board, flash_dir: Path, heapsize: int | None = None) -> None:
        paths.check_engine()
        if heapsize is None:
            heapsize = initial_heap(board)
        argv = [
            paths.node_binary(),
            str(paths.EMULATOR / "runner.mjs"),
            f"--flash={flash_dir}",
            f"--rom={paths.EMULATOR / 'rom'}",
            f"--fs_size={board.fs_size}",
            f"--fs_block={board.fs_block_size}",
            f"--machine={board.machine}",
            f"--heapsize={heapsize}",
            f"--heap_start={board.heap_start}",
        ]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=paths.ROOT,
            bufsize=0,
            preexec_fn=_die_with_parent,
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        self.stdout = self.proc.stdout
        os.set_blocking(self.stdout.fileno(), False)
        self._buf = b""
        self._stderr: list[bytes] = []
        # Drain stderr in the background so a chatty VM never blocks on a full pipe.
        self._err_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_thread.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):  # type: ignore[union-attr]
            self._stderr.append(chunk)

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def fileno(self) -> int:
        return self.stdout.fileno()

    def send(self, obj: Any) -> None:
        self.send_line(json.dumps(obj, separators=(",", ":")))

    def send_line(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line.encode() + b"\n")
        except (BrokenPipeError, ValueError):
            raise VMExited(self._final_stderr()) from None

    def read_available(self) -> list[dict[str, Any]]:
        """Parse every complete message already in the pipe; raise VMExited at end of file."""
        try:
            chunk = self.stdout.read(1 << 16)
        except BlockingIOError:
            chunk = None
        if chunk == b"":
            msgs = self._split()
            if msgs:
                return msgs
            raise VMExited(self._final_stderr())
        if chunk:
            self._buf += chunk
        return self._split()

    def _split(self) -> list[dict[str, Any]]:
        out = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return out
            line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
            out.append(json.loads(line))

    def wait_readable(self, timeout: float | None) -> bool:
        with selectors.DefaultSelector() as sel:
            sel.register(self.stdout, selectors.EVENT_READ)
            return bool(sel.select(timeout))

    def _final_stderr(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        self._err_thread.join(timeout=1)
        return self.stderr

    def kill(self) -> None:
        """Stop at once, as a power cut does: nothing unflushed reaches the flash."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                with contextlib.suppress(OSError):
                    f.close()
