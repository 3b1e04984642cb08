# MQTT 3.1.1 uplink (docs/uplink.md): sensor/ipnet.py gives it the socket and the back-off.
from sensor import ipnet


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


class MQTT:
    """A small MQTT 3.1.1 client: clean session, QoS 1 PUBLISH confirmed by PUBACK, PINGREQ
    keepalive, reconnect with exponential back-off. One frame in flight at a time, so a
    PUBACK confirms exactly the frame the outbox offered."""

    def __init__(self, url, topic, client_id, keepalive=60, ca=None, clock=None):
        from sensor.transport import parse_url  # boot only: the app forgets it after

        scheme, self.host, self.port, self.user, self.password, _ = parse_url(url)
        if scheme not in ("mqtt", "mqtts"):
            raise ValueError("mqtt url")
        self.tls = scheme == "mqtts"
        self.topic = topic
        self.client_id = client_id
        self.keepalive = keepalive
        self.ca = ca
        self._clock = clock or ipnet.clock()
        self._backoff = ipnet.Backoff(self._clock)
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
        s = ipnet.connect(self.host, self.port, self.tls, self.ca)
        try:
            ipnet.tx(s, _packet(0x10, body))
            ack = ipnet.read_exact(s, 4)
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
        ipnet.tx(s, data)
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
                head = ipnet.read_exact(s, 2)
                n = head[1]
                if n & 0x80:  # no packet we expect is that long: protocol error
                    raise OSError(71)
                rest = ipnet.read_exact(s, n) if n else b""
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
            resp = ipnet.read_exact(self._sock, 2)
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
