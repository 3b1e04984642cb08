"""The emulator's serial bridge (atsource.emulator.serialport.SerialBridge): what a tool wrote
before closing the port still reaches the board, as bytes sent on a UART do."""

from __future__ import annotations

import os

from atsource.emulator.serialport import SerialBridge


def test_bytes_written_just_before_close_reach_the_board() -> None:
    bridge = SerialBridge(pty=True, tcp_port=None)
    try:
        assert bridge.pty_path is not None
        fd = os.open(bridge.pty_path, os.O_RDWR | os.O_NOCTTY)
        os.write(fd, b"\x01while True:\n    pass\n\x04")
        os.close(fd)  # gone before the board read anything
        got = b""
        for _ in range(100):  # progress: each poll takes what has arrived
            got += bridge.poll(0.01)
            if got.endswith(b"\x04"):
                break
        assert got == b"\x01while True:\n    pass\n\x04"
        assert bridge.poll(0) == b""  # and a hung-up pty then reads as nothing
    finally:
        bridge.close()
