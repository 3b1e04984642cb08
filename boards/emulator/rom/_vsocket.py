# socket as on the esp32 and rp2 ports (lwIP: extmod/modlwip.c, ports/esp32/modsocket.c),
# bridged to real sockets on the host's loopback by the emulator (atsource/emulator/netbridge.py).
# The emulated Wi-Fi must be joined; names resolve through the emulated network (localhost
# and the names the emulator maps), and the scenario's outages fail connections for real.
import _board as _b
import _vnetwork

AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 0xFFF
SO_REUSEADDR = 4
SO_BROADCAST = 0x20
TCP_NODELAY = 1


def _op(op, **kw):
    if op in ("dns", "connect", "sendto") and not _vnetwork.joined():
        # No Wi-Fi: no DNS server, no route (what lwIP answers with the station down).
        raise OSError(-202 if op == "dns" else 113)
    kw["q"] = "io"
    kw["op"] = op
    kw["now"] = [_b.ms, _b.us]
    return _b.io(kw)


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    ip = _op("dns", h=host)
    return [(AF_INET, type or SOCK_STREAM, proto or IPPROTO_TCP, "", (ip, port))]


def _addr(a):
    # An address is a (host, port) tuple, or (lwIP's getaddrinfo) already resolved.
    if isinstance(a, (tuple, list)):
        return [a[0], a[1]]
    raise TypeError("address")


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        self._type = type
        self._io_id = _op("open", t=type)
        self._timeout = None  # seconds, None blocks

    def settimeout(self, t):
        self._timeout = t

    def setblocking(self, flag):
        self._timeout = None if flag else 0

    def setsockopt(self, level, opt, value):
        pass

    def _t(self):
        return -1 if self._timeout is None else int(self._timeout * 1000)

    def connect(self, addr):
        _op("connect", s=self._io_id, a=_addr(addr), t=self._t())

    def bind(self, addr):
        _op("bind", s=self._io_id, a=_addr(addr))

    def listen(self, backlog=1):
        _op("listen", s=self._io_id, n=backlog)

    def accept(self):
        sid, addr = _op("accept", s=self._io_id, t=self._t())
        c = socket.__new__(socket)
        c._type = SOCK_STREAM
        c._io_id = sid
        c._timeout = None
        return c, tuple(addr)

    def send(self, data):
        return _op("send", s=self._io_id, d=bytes(data).hex(), t=self._t())

    def sendall(self, data):
        mv = memoryview(data)
        n = 0
        while n < len(mv):
            n += self.send(mv[n:])

    write = sendall

    def sendto(self, data, addr):
        return _op("sendto", s=self._io_id, d=bytes(data).hex(), a=_addr(addr))

    def recv(self, n):
        return bytes.fromhex(_op("recv", s=self._io_id, n=n, t=self._t()))

    def recvfrom(self, n):
        d, addr = _op("recvfrom", s=self._io_id, n=n, t=self._t())
        return bytes.fromhex(d), tuple(addr)

    def read(self, n=-1):
        if n < 0:
            out = b""
            while True:
                b = self.recv(1024)
                if not b:
                    return out
                out += b
        return self.recv(n)

    def readinto(self, buf, n=None):
        b = self.recv(len(buf) if n is None else n)
        buf[: len(b)] = b
        return len(b)

    def readline(self):
        out = b""
        while not out.endswith(b"\n"):
            b = self.recv(1)
            if not b:
                break
            out += b
        return out

    def makefile(self, mode="rb", buffering=0):
        return self

    def close(self):
        self._tls = None  # mbedTLS's buffers on an rp2 (_vssl.py) go with the session
        if self._io_id is not None:
            _op("close", s=self._io_id)
            self._io_id = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
