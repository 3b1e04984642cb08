"""An emulated board behind a serial port, driven by the real mpremote (subprocess and API)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
from atsource import paths
from atsource.emulator.api import serve_board

MPREMOTE = [sys.executable, "-m", "mpremote"]


def mpremote(port: str, *args: str) -> str:
    # No wall-clock limit of our own: mpremote has its own waits.
    r = subprocess.run([*MPREMOTE, "connect", port, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"mpremote {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def test_copy_a_tree_in_and_read_it_back(flash: Path, tmp_path: Path) -> None:
    src = tmp_path / "tree"
    (src / "pkg" / "sub").mkdir(parents=True)
    files = {
        "a.txt": b"hello\n",
        "pkg/b.bin": bytes(range(256)) * 20,
        "pkg/sub/c.py": b"X = 1\r\nY = 2\n",
    }
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    with serve_board("pico-w", flash) as board:
        out = mpremote(board.port, "fs", "cp", "-r", f"{src}/", ":")
        assert "cp " in out
        listing = mpremote(board.port, "fs", "tree")
        assert "c.py" in listing and "b.bin" in listing
        # Read back byte for byte, through mpremote and from the flash directory.
        back = tmp_path / "back.bin"
        mpremote(board.port, "fs", "cp", ":tree/pkg/b.bin", str(back))
        assert back.read_bytes() == files["pkg/b.bin"]
        sums = mpremote(board.port, "fs", "sha256sum", ":tree/pkg/sub/c.py")
        assert __import__("hashlib").sha256(files["pkg/sub/c.py"]).hexdigest() in sums
        # A second copy skips every file by hash.
        again = mpremote(board.port, "fs", "cp", "-r", f"{src}/", ":")
        assert again.count("Up to date") == 3
        # rm, mkdir, rmdir, df
        mpremote(board.port, "fs", "rm", ":tree/a.txt")
        mpremote(board.port, "fs", "mkdir", ":newdir")
        mpremote(board.port, "fs", "rmdir", ":newdir")
        assert "a.txt" not in mpremote(board.port, "fs", "ls", ":tree")
        df = mpremote(board.port, "df")
        assert "868352" in df or "848" in df  # the Pico W's file-system size
    for rel, data in files.items():
        if rel != "a.txt":
            assert (flash / "tree" / rel).read_bytes() == data


def test_files_survive_reset_and_an_emulator_restart(flash: Path) -> None:
    with serve_board("esp32-devkitc", flash) as board:
        mpremote(board.port, "exec", "f = open('note.txt', 'w'); f.write('kept'); f.close()")
        boots = board.boots
        mpremote(board.port, "reset")
        board.wait_boot(boots)
        assert "kept" in mpremote(board.port, "exec", "print(open('note.txt').read())")
        # A hard reset, then the soft reset mpremote does on connecting again.
        assert [r.kind for r in board.emu.stats.resets][-2:] == ["reset", "soft"]
    with serve_board("esp32-devkitc", flash) as board:
        out = mpremote(board.port, "exec", "import os; print(sorted(os.listdir()))")
        assert "note.txt" in out


def test_mpremote_interrupts_a_main_py_that_loops_forever(flash: Path) -> None:
    (flash / "main.py").write_text(
        "import time\nn = 0\nwhile True:\n    n += 1\n    print('tick', n)\n    time.sleep(1)\n"
    )
    with serve_board("pico-w", flash) as board:
        board.wait_for("tick 2", within=10)
        # resume: no soft reset on connecting, so main.py's globals are still there.
        out = mpremote(board.port, "resume", "exec", "print('at the REPL', n > 1)")
        assert "at the REPL True" in out
        assert any("KeyboardInterrupt" in line for _, line in board.emu.lines)


def test_soft_reset_reruns_boot_and_keeps_files(flash: Path) -> None:
    (flash / "boot.py").write_text("print('boot.py ran')\n")
    with serve_board("pico-w", flash) as board:
        mpremote(board.port, "exec", "open('x', 'w').write('1')")
        boots = board.boots
        mpremote(board.port, "soft-reset")
        board.wait_boot(boots)
        assert sum("boot.py ran" in line for _, line in board.emu.lines) >= 2
        assert "soft" in [r.kind for r in board.emu.stats.resets]
        assert (flash / "x").read_text() == "1"


def test_two_boards_side_by_side(tmp_path: Path) -> None:
    fa, fb = tmp_path / "a", tmp_path / "b"
    fa.mkdir()
    fb.mkdir()
    with serve_board("pico-w", fa) as a, serve_board("esp32-devkitc", fb) as b:
        assert a.port != b.port
        mpremote(a.port, "exec", "open('who', 'w').write('a')")
        mpremote(b.port, "exec", "open('who', 'w').write('b')")
        ua = mpremote(a.port, "exec", "import machine; print(machine.unique_id().hex())")
        ub = mpremote(b.port, "exec", "import machine; print(machine.unique_id().hex())")
        assert ua != ub
    assert (fa / "who").read_text() == "a" and (fb / "who").read_text() == "b"


def test_socket_url_and_mpremote_python_api(flash: Path) -> None:
    from mpremote.transport_serial import SerialTransport

    with serve_board("esp32-devkitc", flash) as board:
        t = SerialTransport(board.socket_url, baudrate=115200)
        try:
            t.enter_raw_repl()
            assert t.eval("1 + 2") == 3
            t.fs_writefile("api.txt", b"via the API")
            assert t.fs_readfile("api.txt") == b"via the API"
            # ENOENT crosses as MicroPython's errno 2, which mpremote maps to the host's.
            with pytest.raises(FileNotFoundError):
                t.fs_readfile("missing.txt")
            t.exit_raw_repl()
        finally:
            t.close()


def test_power_cut_over_the_port_loses_only_what_was_not_flushed(flash: Path) -> None:
    with serve_board("pico-w", flash) as board:
        mpremote(board.port, "exec", "f = open('d', 'w'); f.write('ok'); f.close()")
        mpremote(
            board.port, "exec", "import builtins; builtins.g = open('u', 'w'); g.write('gone')"
        )
        boots = board.boots
        board.power_cut(0.2)
        board.wait_boot(boots)
        out = mpremote(board.port, "exec", "print(open('d').read(), repr(open('u').read()))")
        assert "ok ''" in out


def test_deployed_firmware_runs_after_reset(flash: Path) -> None:
    with serve_board("pico-w", flash) as board:
        mpremote(board.port, "fs", "cp", "-r", f"{paths.FIRMWARE}/.", ":")
        mpremote(board.port, "fs", "cp", str(paths.BOARDS / "pico-w.json"), ":board.json")
        mpremote(board.port, "reset")
        board.wait_for("atsource: pico-w boot", within=15)
        board.wait_for("config: /config.json missing, using defaults", within=15)


def test_mpremote_repl_and_ctrl_c_stop_a_running_main_py(flash: Path) -> None:
    """The interactive path: `mpremote connect PORT repl` on a terminal, then Ctrl-C."""
    import os
    import pty
    import select

    (flash / "main.py").write_text(
        "import time\nwhile True:\n    print('busy')\n    time.sleep_ms(200)\n"
    )
    with serve_board("pico-w", flash) as board:
        board.wait_for("busy", within=10)
        pid, fd = pty.fork()
        if pid == 0:  # the child: mpremote with a terminal, as a person runs it
            os.execv(sys.executable, [*MPREMOTE, "connect", board.port, "repl"])
        seen = b""

        def read_until(marker: bytes, within: float) -> None:
            def got() -> bool | None:
                nonlocal seen
                if select.select([fd], [], [], 0)[0]:
                    with contextlib.suppress(OSError):
                        seen += os.read(fd, 4096)
                return True if marker in seen else None

            try:  # board time: the emulated board at the other end of mpremote
                board.wait(got, within, f"{marker!r} not seen")
            except TimeoutError:
                raise AssertionError(seen.decode(errors="replace")[-500:]) from None

        try:
            read_until(b"busy", 10)
            os.write(fd, b"\x03")
            read_until(b"KeyboardInterrupt", 10)
            read_until(b">>> ", 10)
            os.write(fd, b"print(6 * 7)\r")
            read_until(b"42", 10)
        finally:
            os.write(fd, b"\x1d")  # Ctrl-] leaves mpremote's repl
            time.sleep(0.3)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(fd)
