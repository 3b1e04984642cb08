# HTTP uplink (docs/uplink.md): sensor/ipnet.py gives it the socket and the back-off.
from sensor import ipnet


class HTTP:
    """HTTP/1.1 POST of each frame (application/cose); any 2xx confirms it. One connection
    per frame: uplinks are minutes apart."""

    def __init__(self, url, ca=None, clock=None):
        from sensor.transport import parse_url  # boot only: the app forgets it after

        scheme, self.host, self.port, self.user, self.password, self.path = parse_url(url)
        if scheme not in ("http", "https"):
            raise ValueError("http url")
        self.tls = scheme == "https"
        self.ca = ca
        self._backoff = ipnet.Backoff(clock or ipnet.clock())

    def send(self, frame):
        if not self._backoff.ready():
            return False
        try:
            s = ipnet.connect(self.host, self.port, self.tls, self.ca)
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
            ipnet.tx(s, req.encode() + bytes(frame))
            line = b""
            while not line.endswith(b"\n") and len(line) < 64:
                c = ipnet.rx(s, 1)
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
