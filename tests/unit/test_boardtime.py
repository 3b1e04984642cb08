"""Board time: the clock host tools wait by on an emulated board (wall time less the time its
threads waited for a CPU), and how a served board announces its ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from atsource import boardtime
from atsource.boardtime import BoardClock, EmulatedPort, announce, lookup

HAS_SCHEDSTAT = os.path.exists(f"/proc/{os.getpid()}/schedstat")


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))


def test_announce_and_lookup(tmp_path: Path) -> None:
    flash = tmp_path / "flash"
    with announce(["/dev/pts/77", "socket://127.0.0.1:4567"], flash):
        found = lookup("/dev/pts/77")
        assert found is not None and found.pid == os.getpid()
        assert found.flash == str(flash.resolve())
        assert lookup("socket://127.0.0.1:4567") is not None
        assert lookup("/dev/pts/78") is None and lookup("/dev/ttyUSB0") is None
    assert lookup("/dev/pts/77") is None  # gone with the board


def test_a_dead_announcement_is_ignored(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(proc.stdout)
    d = boardtime._dir()
    d.mkdir(parents=True)
    doc = f'{{"port": "/dev/pts/9", "pid": {dead}, "tid": {dead}, "flash": "/x"}}'
    (d / boardtime._key("/dev/pts/9")).write_text(doc)
    assert lookup("/dev/pts/9") is None
    (d / boardtime._key("/dev/pts/9")).write_text("not json")
    assert lookup("/dev/pts/9") is None


def test_real_boards_keep_the_wall_clock() -> None:
    c = BoardClock(None)
    a = c.now()
    time.sleep(0.05)
    assert c.now() - a >= 0.05


BUSY = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"


@pytest.mark.skipif(not HAS_SCHEDSTAT or not hasattr(os, "sched_setaffinity"),
                    reason="needs Linux schedstat and CPU affinity")  # fmt: skip
def test_time_a_board_waits_for_a_cpu_is_not_board_time() -> None:
    # The "board" and two hogs share one CPU: the board runs about a third of the time, so
    # its clock runs well behind the wall clock, however busy the rest of the machine is.
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(3)]
    try:
        board = procs[0]
        emu = EmulatedPort("/dev/pts/1", board.pid, board.pid, "/nowhere")
        time.sleep(0.3)  # all three running on CPU 0
        c = BoardClock(emu)
        assert c.emulated is not None
        b0, w0 = c.now(), time.monotonic()
        while time.monotonic() - w0 < 1.5:
            c.now()
            time.sleep(0.01)
        board_s, wall_s = c.now() - b0, time.monotonic() - w0
        print(f"board {board_s:.2f} s in {wall_s:.2f} s of wall time")
        assert 0 <= board_s < 0.8 * wall_s
    finally:
        for p in procs:
            p.kill()
            p.wait()
