"""A port locked by our own connection, still held by a child we started, is not "busy"; a port
another program holds is (atsource.device.Device._open, locked_by_this_process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import serial
from atsource.device import Device, locked_by_this_process
from atsource.errors import DeviceError


@pytest.fixture
def pty() -> Iterator[str]:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield path
    os.close(master)


def test_our_lock_held_by_a_child_is_waited_for(pty: str) -> None:
    s = serial.serial_for_url(pty, do_not_open=True, exclusive=True)
    s.open()
    # A child that inherits the locked descriptor (as an emulated board's VM does between
    # fork and exec) and keeps it until it has read a line.
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"],
        stdin=subprocess.PIPE,
        pass_fds=[s.fd],
    )
    s.close()
    assert locked_by_this_process(pty)  # ours, though only the child holds it now
    got: dict[str, object] = {}

    def opener() -> None:
        try:
            got["transport"] = Device._open(Device.__new__(Device), pty, 115200, 0)
        except DeviceError as e:
            got["error"] = e

    th = threading.Thread(target=opener)
    th.start()
    th.join(0.5)  # a refusal would come at once; the open must still be waiting
    assert "error" not in got, got
    assert child.stdin is not None
    child.stdin.write(b"go\n")  # the child lets go; the open then succeeds
    child.stdin.close()
    th.join()
    assert child.wait() == 0
    assert "transport" in got, got
    got["transport"].close()  # type: ignore[attr-defined]


def test_another_programs_lock_is_busy_at_once(pty: str) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c",
         "import serial, sys\n"
         f"s = serial.serial_for_url({pty!r}, do_not_open=True, exclusive=True)\n"
         "s.open()\n"
         "print('locked', flush=True)\n"
         "sys.stdin.readline()\n"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert other.stdout is not None and other.stdout.readline() == b"locked\n"
        assert not locked_by_this_process(pty)
        # The other program keeps its lock until told: only an immediate refusal ends this.
        with pytest.raises(DeviceError, match=r"^port busy: .* is open in another program"):
            Device._open(Device.__new__(Device), pty, 115200, 0)
    finally:
        other.kill()
        other.wait()
