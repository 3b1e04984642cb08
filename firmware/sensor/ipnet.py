# MQTT and HTTP over IP (docs/uplink.md), kept apart from transport.py so a board that uses
# the host link never loads them: code imported from flash lives in RAM.
from micropython import const

_BACKOFF_MIN_MS = const(1000)
_BACKOFF_MAX_MS = const(300000)
_TIMEOUT_S = const(10)


def parse_url(url):
    """'mqtt://user:pw@host:1883/path' -> (scheme, host, port, user, password, path)."""
    i = url.find("://")
    if i < 0:
        raise ValueError("url")
    scheme = url[:i]
    rest = url[i + 3 :]
    j = rest.find("/")
    path = rest[j:] if j >= 0 else "/"
    netloc = rest[:j] if j >= 0 else rest
    user = password = None
    k = netloc.rfind("@")
    if k >= 0:
        cred = netloc[:k]
        netloc = netloc[k + 1 :]
        c = cred.find(":")
        user, password = (cred[:c], cred[c + 1 :]) if c >= 0 else (cred, None)
    default = {"mqtt": 1883, "mqtts": 8883, "http": 80, "https": 443}.get(scheme)
    if default is None:
        raise ValueError("url scheme")
    c = netloc.rfind(":")
    if c >= 0 and netloc[c + 1 :].isdigit():
        host, port = netloc[:c], int(netloc[c + 1 :])
    else:
        host, port = netloc, default
    if not host:
        raise ValueError("url host")
    return scheme, host, port, user, password, path


def _open(host, port, tls, ca=None):
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


def _tx(s, data):
    # CPython sockets have sendall(); MicroPython's TLS sockets are streams with write().
    if hasattr(s, "sendall"):
        s.sendall(data)
    else:
        s.write(data)


def _rx(s, n):
    return s.recv(n) if hasattr(s, "recv") else s.read(n)


def _read_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = _rx(s, n - len(buf))
        if not chunk:
            raise OSError(104)  # ECONNRESET: the peer closed
        buf += chunk
    return buf


def _utf8(buf, text):
    b = text.encode() if isinstance(text, str) else bytes(text)
    buf.extend(len(b).to_bytes(2, "big"))
    buf.extend(b)


def _packet(kind, body):
    # Fixed header (type and flags, then the remaining length as a varint) and the body.
    out = bytearray((kind,))
    n = len(body)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            break
    out.extend(body)
    return out


class _Backoff:
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


def _hal():
    from sensor import hal

    return hal


class MQTT:
    """A small MQTT 3.1.1 client: clean session, QoS 1 PUBLISH confirmed by PUBACK, PINGREQ
    keepalive, reconnect with exponential back-off. One frame in flight at a time, so a
    PUBACK confirms exactly the frame the outbox offered."""

    def __init__(self, url, topic, client_id, keepalive=60, ca=None, clock=None):
        scheme, self.host, self.port, self.user, self.password, _ = parse_url(url)
        if scheme not in ("mqtt", "mqtts"):
            raise ValueError("mqtt url")
        self.tls = scheme == "mqtts"
        self.topic = topic
        self.client_id = client_id
        self.keepalive = keepalive
        self.ca = ca
        self._clock = clock or _hal()
        self._backoff = _Backoff(self._clock)
        self._sock = None
        self._pid = 0
        self._last_tx = 0
        self.connects = 0  # successful connections (for tests and health)

    def _connect(self):
        body = bytearray(b"\x00\x04MQTT\x04")
        flags = 0x02  # clean session: nothing is kept for us on the broker
        if self.user is not None:
            flags |= 0x80
            if self.password is not None:
                flags |= 0x40
        body.append(flags)
        body.extend(self.keepalive.to_bytes(2, "big"))
        _utf8(body, self.client_id)
        if self.user is not None:
            _utf8(body, self.user)
            if self.password is not None:
                _utf8(body, self.password)
        s = _open(self.host, self.port, self.tls, self.ca)
        try:
            _tx(s, _packet(0x10, body))
            ack = _read_exact(s, 4)
            if ack[0] != 0x20 or ack[1] != 2 or ack[3] != 0:
                raise OSError(111)  # ECONNREFUSED: the broker said no
        except BaseException:
            s.close()
            raise
        self._sock = s
        self._last_tx = self._clock.ticks_ms()
        self.connects += 1

    def _send(self, data):
        s = self._sock
        assert s is not None
        _tx(s, data)
        self._last_tx = self._clock.ticks_ms()

    def _drop(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _ensure(self):
        if self._sock is not None:
            return True
        if not self._backoff.ready():
            return False
        try:
            self._connect()
        except OSError:
            self._backoff.failed()
            return False
        self._backoff.ok()
        return True

    def send(self, frame):
        if not self._ensure():
            return False
        self._pid = self._pid % 0xFFFF + 1
        body = bytearray()
        _utf8(body, self.topic)
        body.extend(self._pid.to_bytes(2, "big"))
        body.extend(frame)
        try:
            self._send(_packet(0x32, body))  # PUBLISH, QoS 1
            s = self._sock
            assert s is not None
            while True:
                head = _read_exact(s, 2)
                n = head[1]
                if n & 0x80:  # no packet we expect is that long: protocol error
                    raise OSError(71)
                rest = _read_exact(s, n) if n else b""
                if head[0] == 0x40 and n == 2 and int.from_bytes(rest, "big") == self._pid:
                    return True
                # Anything else (a late PINGRESP) is skipped.
        except OSError:
            # No PUBACK: the frame stays in the outbox and goes again after reconnecting.
            self._drop()
            self._backoff.failed()
            return False

    def poll(self):
        # Keep the connection alive when idle; a dead one is noticed here, not at the next send.
        if self._sock is None:
            return
        c = self._clock
        if c.ticks_diff(c.ticks_ms(), self._last_tx) < self.keepalive * 500:
            return
        try:
            self._send(b"\xc0\x00")  # PINGREQ
            resp = _read_exact(self._sock, 2)
            if resp != b"\xd0\x00":
                raise OSError(71)
        except OSError:
            self._drop()

    def close(self):
        if self._sock is not None:
            try:
                self._send(b"\xe0\x00")  # DISCONNECT
            except OSError:
                pass
        self._drop()


class HTTP:
    """HTTP/1.1 POST of each frame (application/cose); any 2xx confirms it. One connection
    per frame: uplinks are minutes apart."""

    def __init__(self, url, ca=None, clock=None):
        scheme, self.host, self.port, self.user, self.password, self.path = parse_url(url)
        if scheme not in ("http", "https"):
            raise ValueError("http url")
        self.tls = scheme == "https"
        self.ca = ca
        self._backoff = _Backoff(clock or _hal())

    def send(self, frame):
        if not self._backoff.ready():
            return False
        try:
            s = _open(self.host, self.port, self.tls, self.ca)
        except OSError:
            self._backoff.failed()
            return False
        try:
            host = self.host if self.port in (80, 443) else "%s:%d" % (self.host, self.port)
            req = (
                "POST %s HTTP/1.1\r\nHost: %s\r\n"
                'Content-Type: application/cose; cose-type="cose-encrypt0"\r\n'
                "Content-Length: %d\r\nConnection: close\r\n\r\n" % (self.path, host, len(frame))
            )
            _tx(s, req.encode() + bytes(frame))
            line = b""
            while not line.endswith(b"\n") and len(line) < 64:
                c = _rx(s, 1)
                if not c:
                    break
                line += c
            parts = line.split()
            ok = len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1][:1] == b"2"
        except OSError:
            ok = False
        finally:
            s.close()
        if ok:
            self._backoff.ok()
        else:
            self._backoff.failed()
        return ok

    def poll(self):
        pass

    def close(self):
        pass
