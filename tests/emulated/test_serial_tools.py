"""Tools nobody here wrote, against an emulated board's serial port: nothing printed is lost,
running code reads the port (input(), sys.stdin, select), and mpremote mount, rshell and ampy
move files both ways (issue: emulated boards that fail where a real board fails)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import serial
from atsource.emulator.api import serve_board

BIN = Path(sys.executable).parent


def run(*argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    # The timeout only stops a hang from blocking the suite; nothing is timed.
    r = subprocess.run(argv, input=stdin, capture_output=True, timeout=300)
    assert r.returncode == 0, f"{argv} failed:\n{r.stdout!r}\n{r.stderr!r}"
    return r


def mpremote(port: str, *args: str) -> bytes:
    return run(sys.executable, "-m", "mpremote", "connect", port, *args).stdout


def test_a_long_print_arrives_whole(flash: Path) -> None:
    with serve_board("pico-w", flash) as board:
        out = mpremote(board.port, "exec", "for i in range(20000): print('line %06d' % i)")
    lines = [x for x in out.decode().splitlines() if x.startswith("line ")]
    assert lines == [f"line {i:06d}" for i in range(20000)]


def _raw_exec(port: serial.Serial, code: bytes) -> None:
    port.write(b"\r\x03\x03\x01")
    port.read_until(b"raw REPL; CTRL-B to exit\r\n>")
    port.write(code + b"\x04")
    assert port.read_until(b"OK").endswith(b"OK")


def test_running_code_reads_the_port(flash: Path) -> None:
    code = (
        b"import sys, select\n"
        b"print('name', input('? '))\n"
        b"p = select.poll(); p.register(sys.stdin, select.POLLIN)\n"
        b"print('ready', len(p.poll(0)))\n"
        b"print('raw', sys.stdin.buffer.read(3))\n"
        b"b = bytearray(2); sys.stdin.buffer.readinto(b); print('into', bytes(b))\n"
    )
    with serve_board("pico-w", flash) as board:
        # Generous timeouts guard against a hang; the test waits on the board's output.
        port = serial.serial_for_url(board.port, timeout=120)
        try:
            _raw_exec(port, code)
            assert port.read_until(b"? ").endswith(b"? ")
            port.write(b"ada\r")
            assert port.read_until(b"name ada\r\n").endswith(b"name ada\r\n")
            assert port.read_until(b"ready 0\r\n").endswith(b"ready 0\r\n")
            port.write(b"xyzAB")
            assert port.read_until(b"raw b'xyz'\r\n").endswith(b"raw b'xyz'\r\n")
            assert port.read_until(b"into b'AB'\r\n").endswith(b"into b'AB'\r\n")
        finally:
            port.close()


def test_mpremote_mount_runs_code_from_the_host(flash: Path, tmp_path: Path) -> None:
    (tmp_path / "hostmod.py").write_text("print('from host', 6 * 7)\n")
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 8)
    code = (
        "import hostmod, hashlib, binascii\n"
        "print('sum', binascii.hexlify(hashlib.sha256(open('data.bin','rb').read()).digest()))\n"
        "open('made.txt', 'w').write('written on the board')\n"
    )
    with serve_board("pico-w", flash) as board:
        out = mpremote(board.port, "mount", str(tmp_path), "exec", code).decode()
    assert "from host 42" in out
    import hashlib

    assert hashlib.sha256((tmp_path / "data.bin").read_bytes()).hexdigest() in out
    assert (tmp_path / "made.txt").read_text() == "written on the board"


@pytest.mark.skipif(shutil.which("rshell", path=str(BIN)) is None, reason="rshell not installed")
def test_rshell_copies_both_ways(flash: Path, tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(bytes(range(256)) * 12)
    with serve_board("esp32-devkitc", flash) as board:
        rshell = [str(BIN / "rshell"), "-p", board.port, "--quiet"]
        run(*rshell, "cp", str(src), "/pyboard/a.bin")
        assert (flash / "a.bin").read_bytes() == src.read_bytes()
        run(*rshell, "cp", "/pyboard/a.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


@pytest.mark.skipif(shutil.which("ampy", path=str(BIN)) is None, reason="ampy not installed")
def test_ampy_put_and_get(flash: Path, tmp_path: Path) -> None:
    src = tmp_path / "c.txt"
    src.write_text("hello ampy\n" * 50)
    with serve_board("pico-w", flash) as board:
        ampy = [str(BIN / "ampy"), "-p", board.port]
        run(*ampy, "put", str(src), "c.txt")
        assert (flash / "c.txt").read_bytes() == src.read_bytes()
        run(*ampy, "get", "c.txt", str(tmp_path / "back.txt"))
    assert (tmp_path / "back.txt").read_bytes() == src.read_bytes()
