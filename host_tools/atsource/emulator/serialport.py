"""The serial port of an emulated board: a pty (Linux) and a TCP port (pyserial's socket://).

Both carry the same byte stream, as one USB serial port would. What the board prints goes to
both; bytes typed on either reach the board. One thing never reaches the VM: raw-paste mode
(Ctrl-E A Ctrl-A in the raw REPL) hangs the WebAssembly VM, so the port answers it itself
with "R\\x00" (understood, not supported) and mpremote falls back to plain raw mode.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import selectors
import socket
import tty
from typing import Any

RAW_PASTE_REQUEST = b"\x05A\x01"
RAW_PASTE_REFUSED = b"R\x00"
# Output for a port nobody has open is kept up to this much, then the oldest is dropped (a USB
# port with no host). While somebody has the port open nothing is dropped: past HOLD bytes
# waiting, the board stops until the reader catches up (flow control), as a USB CDC port
# blocks the writer while the host is connected but slow.
MAX_BACKLOG = 1 << 16
HOLD = 1 << 14


class SerialBridge:
    def __init__(self, *, pty: bool = True, tcp_port: int | None = 0) -> None:
        self._master: int | None = None
        self.pty_path: str | None = None
        if pty:
            self._master, slave = os.openpty()
            # Raw line discipline: no echo, no CR/LF translation, no signals on Ctrl-C.
            tty.setraw(slave)
            os.set_blocking(self._master, False)
            self.pty_path = os.ttyname(slave)
            # Not kept open here: the master then sees POLLHUP exactly while nobody has the
            # port open, which tells a reader that is slow from no reader at all.
            os.close(slave)
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None
        self.tcp_port: int | None = None
        if tcp_port is not None:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(("127.0.0.1", tcp_port))
            self._listener.listen(1)
            self._listener.setblocking(False)
            self.tcp_port = self._listener.getsockname()[1]
        self._pty_out = bytearray()
        self._tcp_out = bytearray()
        self._held = b""  # a possible start of the raw-paste request, split across reads

    @property
    def url(self) -> str:
        """The name to give mpremote or pyserial: the pty path, else the socket URL."""
        if self.pty_path:
            return self.pty_path
        return f"socket://127.0.0.1:{self.tcp_port}"

    @property
    def urls(self) -> list[str]:
        out = []
        if self.pty_path:
            out.append(self.pty_path)
        if self.tcp_port is not None:
            out.append(f"socket://127.0.0.1:{self.tcp_port}")
        return out

    def _pty_open(self) -> bool:
        """Somebody has the pty open (mpremote, pyserial, a terminal)."""
        if self._master is None:
            return False
        p = select.poll()
        p.register(self._master, select.POLLIN)
        return not any(ev & select.POLLHUP for _, ev in p.poll(0))

    def has_reader(self) -> bool:
        return self._pty_open() or self._client is not None

    def backlogged(self) -> bool:
        """Output is waiting for a reader that has the port open: hold the board."""
        return (len(self._pty_out) > HOLD and self._pty_open()) or (
            self._client is not None and len(self._tcp_out) > HOLD
        )

    def wait_writable(self, timeout: float) -> None:
        """Wait until a reader takes some of the held output (or the timeout), then send."""
        with selectors.DefaultSelector() as sel:
            if self._pty_out and self._pty_open():
                assert self._master is not None
                sel.register(self._master, selectors.EVENT_WRITE)
            if self._tcp_out and self._client is not None:
                sel.register(self._client, selectors.EVENT_WRITE)
            if sel.get_map():
                sel.select(timeout)
        self._flush()

    def fileobjs(self) -> list[Any]:
        objs: list[Any] = []
        # A pty nobody has open reads as hung up (always "readable"): leave it out then.
        if self._master is not None and self._pty_open():
            objs.append(self._master)
        if self._listener is not None:
            objs.append(self._listener)
        if self._client is not None:
            objs.append(self._client)
        return objs

    # ---- board -> port ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._master is not None:
            self._pty_out += data
        if self._client is not None:
            self._tcp_out += data
        self._flush()

    def _flush(self) -> None:
        if self._master is not None and self._pty_out:
            try:
                n = os.write(self._master, self._pty_out)
                del self._pty_out[:n]
            except BlockingIOError:
                pass
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
            if len(self._pty_out) > MAX_BACKLOG and not self._pty_open():
                # Nobody has the port open: forget what it missed, as a USB port does.
                del self._pty_out[: len(self._pty_out) - MAX_BACKLOG]
        if self._client is not None and self._tcp_out:
            try:
                n = self._client.send(self._tcp_out)
                del self._tcp_out[:n]
            except BlockingIOError:
                pass
            except OSError:
                self._drop_client()

    # ---- port -> board ----------------------------------------------------------------------
    def poll(self, timeout: float) -> bytes:
        """Wait up to ``timeout`` for input; return the bytes meant for the board."""
        self._flush()
        got = bytearray()
        with selectors.DefaultSelector() as sel:
            for f in self.fileobjs():
                sel.register(f, selectors.EVENT_READ)
            for key, _ in sel.select(timeout):
                got += self._read(key.fileobj)
        if self._master is not None and not self._pty_open():
            # Closed right after writing (a tool that sends a command and leaves): what it
            # wrote is still in the pty and reaches the board, as bytes on a UART would.
            # With nothing left, a hung-up pty reads EIO (nothing).
            got += self._read(self._master)
        if not got:
            # A lone Ctrl-E (paste mode) or Ctrl-E A was not the raw-paste request after all.
            held, self._held = self._held, b""
            return held
        return self._filter(bytes(got))

    def _read(self, f: Any) -> bytes:
        if f is self._listener:
            assert self._listener is not None
            try:
                conn, _ = self._listener.accept()
            except BlockingIOError:
                return b""
            self._drop_client()
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = conn
            return b""
        if f is self._client:
            assert self._client is not None
            try:
                data = self._client.recv(4096)
            except BlockingIOError:
                return b""
            except OSError:
                data = b""
            if not data:
                self._drop_client()
            return data
        try:
            return os.read(f, 4096)
        except (BlockingIOError, OSError):
            return b""

    def _filter(self, data: bytes) -> bytes:
        data = self._held + data
        self._held = b""
        while True:
            i = data.find(RAW_PASTE_REQUEST)
            if i < 0:
                break
            self.write(RAW_PASTE_REFUSED)
            data = data[:i] + data[i + len(RAW_PASTE_REQUEST) :]
        for k in (2, 1):
            if data.endswith(RAW_PASTE_REQUEST[:k]):
                self._held, data = data[-k:], data[:-k]
                break
        return data

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
        self._client = None
        self._tcp_out.clear()

    def close(self) -> None:
        self._drop_client()
        if self._listener is not None:
            self._listener.close()
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.close(self._master)
        self._master = None
