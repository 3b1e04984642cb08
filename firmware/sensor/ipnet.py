# What the IP transports share (docs/uplink.md): a connected (TLS) socket with a timeout,
# and the back-off between attempts (sensor/transport.py parses the URL, at boot). The
# protocols are one module each (sensor/mqtt.py, sensor/httppost.py), so a board loads only
# the one its config names, and a board on the host link none: code imported from flash
# lives in RAM.
from micropython import const

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(300000)
_TIMEOUT_S = const(10)


def connect(host, port, tls, ca=None):
    # A connected TCP socket (TLS-wrapped when asked), with a timeout on every operation.
    import socket

    addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(_TIMEOUT_S)
        s.connect(addr)
        if tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if ca:
                ctx.load_verify_locations(cadata=ca)
                ctx.verify_mode = ssl.CERT_REQUIRED
            else:
                # No CA provisioned: encrypted but unauthenticated (the payload is sealed
                # end to end either way). CPython insists on this order.
                if hasattr(ctx, "check_hostname"):  # CPython only
                    setattr(ctx, "check_hostname", False)  # noqa: B010
                ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=host)
    except BaseException:
        s.close()
        raise
    return s


def tx(s, data):
    # CPython sockets have sendall(); MicroPython's TLS sockets are streams with write().
    if hasattr(s, "sendall"):
        s.sendall(data)
    else:
        s.write(data)


def rx(s, n):
    return s.recv(n) if hasattr(s, "recv") else s.read(n)


def read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = rx(s, n - len(buf))
        if not chunk:
            raise OSError(104)  # ECONNRESET: the peer closed
        buf += chunk
    return buf


class Backoff:
    # Exponential back-off between connection attempts: 1 s doubling to 5 min.
    def __init__(self, clock):
        self._clock = clock
        self.delay = 0
        self._at = 0

    def ready(self):
        return not self.delay or self._clock.ticks_diff(self._clock.ticks_ms(), self._at) >= 0

    def failed(self):
        self.delay = min(max(self.delay * 2, _BACKOFF_MIN_MS), _BACKOFF_MAX_MS)
        self._at = self._clock.ticks_add(self._clock.ticks_ms(), self.delay)

    def ok(self):
        self.delay = 0


def clock():
    from sensor import hal

    return hal
