# Transports: how a sealed frame leaves the device (docs/uplink.md). Every transport has
#   send(frame) -> bool   True only when the far end confirmed it (the outbox then forgets it)
#   poll()                housekeeping between sends (MQTT keepalive)
#   close()
# Frames are already end-to-end sealed (COSE), so a transport only has to deliver bytes; TLS
# adds broker authentication and hides metadata, not the payload's secrecy.
#
# make(config) picks one from config["uplink"]["transport"]: "hostlink" (emulated boards),
# "mqtt" (QoS 1; mqtts:// for TLS) or "http" (POST; https:// for TLS). This module runs at
# boot only (the app forgets it then; the transport made keeps what it needs).


class HostLink:
    """Frames to the emulator host (the emulated board's `hostlink` module). A real board has
    no such module: every send then fails, and the frames wait in the outbox."""

    def __init__(self):
        try:
            # Not a static import: only emulated boards have it.
            self._link = __import__("hostlink")
        except ImportError:
            self._link = None

    def send(self, frame):
        if self._link is None:
            return False
        return bool(self._link.send(frame))

    def poll(self):
        pass

    def close(self):
        pass


def make(config, client_id="atsource", clock=None):
    """The transport named by config["uplink"]["transport"] (default: hostlink)."""
    up = config.get("uplink") or {}
    kind = up.get("transport", "hostlink")
    if kind == "hostlink":
        return HostLink()
    ca = up.get("ca") or None
    if ca is not None:
        ca = ca.encode()
    if kind == "mqtt":
        from sensor.mqtt import MQTT

        return MQTT(
            up.get("url", "mqtt://127.0.0.1:1883"),
            up.get("topic", "atsource/up"),
            up.get("client_id") or client_id,
            up.get("keepalive", 60),
            ca,
            clock,
        )
    if kind == "http":
        from sensor.httppost import HTTP

        return HTTP(up.get("url", "http://127.0.0.1/uplink"), ca, clock)
    raise ValueError("unknown transport")


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
