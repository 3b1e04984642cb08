"""Emulated boards served as plain serial ports, driven the way a real board is: the whole
board test suite (`pytest tests/hil --board PORT`) through the real-board code path, and an
emulator killed mid-loop leaves no VM behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import serial

ROOT = Path(__file__).resolve().parents[2]
ATSOURCE = [sys.executable, "-m", "atsource.cli"]


@contextmanager
def served(board: str, flash: Path, *extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`atsource emulate BOARD --serial` in its own process, as a user starts it."""
    proc = subprocess.Popen(
        [*ATSOURCE, "emulate", board, "--serial", "--erase", "--flash", str(flash), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = None
        for line in proc.stdout:  # waits on the emulator's own progress, not on a clock
            m = re.match(r"serial: (/dev/\S+)", line)
            if m:
                port = m.group(1)
                break
        assert port, "the emulator printed no serial port"
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)


def test_board_suite_passes_through_plain_serial_ports(tmp_path: Path) -> None:
    with ExitStack() as stack:
        ports = [
            stack.enter_context(served(b, tmp_path / b, "--speed", "60", "--quiet"))[1]
            for b in ("esp32-devkitc", "pico-w")
        ]
        args = [a for p in ports for a in ("--board", p)]
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/hil", *args, "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    # Both boards took the real-board path ([port-...] ids), and most tests ran on it.
    assert "passed" in r.stdout and "failed" not in r.stdout
    assert int(re.search(r"(\d+) passed", r.stdout).group(1)) >= 12


def _runners(flash: Path) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(c.endswith(b"runner.mjs") for c in cmd) and f"--flash={flash}".encode() in cmd:
            out.append(int(d.name))
    return out


def test_killed_emulator_leaves_no_vm_spinning(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with served("pico-w", flash) as (proc, port):
        s = serial.serial_for_url(port, timeout=60)
        s.write(b"\r\x03\x03\x01")
        s.read_until(b"raw REPL; CTRL-B to exit\r\n>")
        s.write(b"while True:\n    pass\n\x04")  # stuck: never reaches the board layer
        s.close()
        assert proc.stdout is not None
        for line in proc.stdout:  # the emulator notices the stall (progress, not a clock)
            if "firmware busy without calling the board layer" in line:
                break
        assert _runners(flash), "no VM process found while the emulator runs"
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    # The VM dies with its emulator; allow the kernel a moment, without timing anything.
    for _ in range(600):
        if not _runners(flash):
            return
        time.sleep(0.05)
    left = _runners(flash)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"VM processes left running: {left}")
