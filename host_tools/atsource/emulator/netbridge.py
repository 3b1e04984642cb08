"""The emulated board's network: its sockets are real sockets on the host's loopback.

The VM's `socket` and `ssl` (boards/emulator/rom/_vsocket.py, _vssl.py) send each operation
here; this side performs it on a real socket and answers with the result or the errno a board
would raise. So the firmware's own MQTT and HTTP clients (and TLS, which runs here in
Python's ssl as it runs in C on a board) talk to real servers: Mosquitto, an HTTP receiver.

Rules of the emulated network:
- only loopback (127.0.0.0/8) is reachable; any other address is EHOSTUNREACH, so no test can
  touch a real network;
- names resolve through the emulated DNS: ``localhost`` and the names in ``hosts``;
- the board's Wi-Fi must be joined and the scenario's network up; during an outage every
  connection attempt fails and open connections are dropped (ECONNRESET / ETIMEDOUT), as a
  board sees when its access point goes away.

Waits (connect, recv, a TLS handshake) take the wall time the real peer takes; the engine
moves the virtual clock on by that much (times the run's speed), never past the socket's
timeout (docs/emulator.md, "Network").
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import ssl
from typing import Any

# Errors as MicroPython on lwIP reports them (py/mperrno.h numbers, Linux's).
EHOSTUNREACH = errno.EHOSTUNREACH
ETIMEDOUT = errno.ETIMEDOUT
ECONNRESET = errno.ECONNRESET
ENOTCONN = errno.ENOTCONN
EBADF = errno.EBADF
EAGAIN = errno.EAGAIN
# getaddrinfo failure on the esp32 port (ports/esp32/modsocket.c: lwIP's EAI_FAIL as -202).
EAI_FAIL = -202
# mbedTLS errors a board's ssl raises (extmod/modtls_mbedtls.c passes them as OSError).
MBEDTLS_X509_CERT_VERIFY_FAILED = -9984  # -0x2700
MBEDTLS_SSL_HANDSHAKE_FAILURE = -30592  # -0x7780


class NetError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback and ":" not in host
    except ValueError:
        return False


class NetBridge:
    """The sockets of one board. ``up()`` says whether the board can reach the network."""

    def __init__(self, hosts: dict[str, str] | None = None) -> None:
        self.hosts = {"localhost": "127.0.0.1", **(hosts or {})}
        self._socks: dict[int, socket.socket] = {}
        self._kinds: dict[int, int] = {}
        self._next = 1

    # ---- lifecycle --------------------------------------------------------------------------
    def close_all(self) -> None:
        """The board reset or lost power: every connection goes, as the chip's RAM does."""
        for s in self._socks.values():
            with contextlib.suppress(OSError):
                s.close()
        self._socks.clear()
        self._kinds.clear()

    def drop_connections(self) -> None:
        """The network went down: established connections die (the peer sees a reset)."""
        for s in self._socks.values():
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def sock(self, sid: Any) -> socket.socket:
        s = self._socks.get(sid) if isinstance(sid, int) else None
        if s is None:
            raise NetError(EBADF)
        return s

    def fileobj(self, sid: Any) -> socket.socket | None:
        return self._socks.get(sid) if isinstance(sid, int) else None

    # ---- operations (no waiting here: the engine waits for readiness first) ------------------
    def resolve(self, host: str) -> str:
        if _loopback(host):
            return host
        ip = self.hosts.get(host.lower())
        if ip is None:
            raise NetError(EAI_FAIL)
        return ip

    def open(self, kind: int) -> int:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == 2 else socket.SOCK_STREAM)
        s.setblocking(False)
        sid = self._next
        self._next += 1
        self._socks[sid] = s
        self._kinds[sid] = kind
        return sid

    def start_connect(self, sid: int, addr: list[Any]) -> None:
        host, port = str(addr[0]), int(addr[1])
        if not _loopback(host):
            raise NetError(EHOSTUNREACH)
        s = self.sock(sid)
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            raise NetError(err)

    def finish_connect(self, sid: int) -> None:
        err = self.sock(sid).getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise NetError(err)

    def bind(self, sid: int, addr: list[Any]) -> None:
        host = str(addr[0]) or "127.0.0.1"
        if host == "0.0.0.0":
            host = "127.0.0.1"  # the board's only interface is the loopback bridge
        if not _loopback(host):
            raise NetError(errno.EADDRNOTAVAIL)
        try:
            self.sock(sid).bind((host, int(addr[1])))
        except OSError as e:
            raise NetError(e.errno or EBADF) from None

    def listen(self, sid: int, backlog: int) -> None:
        self.sock(sid).listen(backlog)

    def accept(self, sid: int) -> list[Any]:
        conn, addr = self.sock(sid).accept()
        conn.setblocking(False)
        cid = self._next
        self._next += 1
        self._socks[cid] = conn
        self._kinds[cid] = 1
        return [cid, list(addr)]

    def send(self, sid: int, data: bytes) -> int:
        try:
            return self.sock(sid).send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except OSError as e:
            raise NetError(e.errno or ECONNRESET) from None

    def sendto(self, sid: int, data: bytes, addr: list[Any]) -> int:
        host = self.resolve(str(addr[0]))
        if not _loopback(host):
            raise NetError(EHOSTUNREACH)
        return self.sock(sid).sendto(data, (host, int(addr[1])))

    def recv(self, sid: int, n: int) -> bytes | None:
        """Bytes, b"" at end of stream, None if nothing is there yet."""
        try:
            return self.sock(sid).recv(max(1, min(n, 1 << 16)))
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError as e:
            raise NetError(e.errno or ECONNRESET) from None

    def recvfrom(self, sid: int, n: int) -> list[Any] | None:
        try:
            data, addr = self.sock(sid).recvfrom(max(1, min(n, 1 << 16)))
        except BlockingIOError:
            return None
        return [data.hex(), list(addr)]

    def pending(self, sid: int) -> bool:
        """Decrypted TLS bytes already buffered (select() cannot see those)."""
        s = self._socks.get(sid)
        return isinstance(s, ssl.SSLSocket) and s.pending() > 0

    def tls_open(self) -> int:
        """TLS sessions open now."""
        return sum(isinstance(s, ssl.SSLSocket) for s in self._socks.values())

    def start_tls(self, sid: int, verify: int, ca: bytes | None, hostname: str | None) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = bool(verify == 2 and hostname)
        ctx.verify_mode = ssl.CERT_REQUIRED if verify == 2 else ssl.CERT_NONE
        if ca is not None:
            try:
                if ca.lstrip().startswith(b"-----BEGIN"):
                    ctx.load_verify_locations(cadata=ca.decode("ascii", "replace"))
                else:
                    ctx.load_verify_locations(cadata=ca)
            except (ssl.SSLError, ValueError):
                raise NetError(MBEDTLS_X509_CERT_VERIFY_FAILED) from None
        raw = self.sock(sid)
        self._socks[sid] = ctx.wrap_socket(
            raw, server_hostname=hostname, do_handshake_on_connect=False
        )

    def handshake(self, sid: int) -> bool:
        """One step of the TLS handshake: True when done, False if it must wait for data."""
        s = self.sock(sid)
        assert isinstance(s, ssl.SSLSocket)
        try:
            s.do_handshake()
            return True
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ssl.SSLCertVerificationError:
            raise NetError(MBEDTLS_X509_CERT_VERIFY_FAILED) from None
        except (ssl.SSLError, OSError):
            raise NetError(MBEDTLS_SSL_HANDSHAKE_FAILURE) from None

    def close(self, sid: int) -> None:
        s = self._socks.pop(sid, None) if isinstance(sid, int) else None
        self._kinds.pop(sid, None)
        if s is not None:
            with contextlib.suppress(OSError):
                s.close()
