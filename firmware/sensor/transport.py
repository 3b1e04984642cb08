# Transports: how a sealed frame leaves the device (docs/uplink.md). Every transport has
#   send(frame) -> bool   True only when the far end confirmed it (the outbox then forgets it)
#   poll()                housekeeping between sends (MQTT keepalive)
#   close()
# Frames are already end-to-end sealed (COSE), so a transport only has to deliver bytes; TLS
# adds broker authentication and hides metadata, not the payload's secrecy.
#
# make(config) picks one from config["uplink"]["transport"]: "hostlink" (emulated boards),
# "mqtt" (QoS 1; mqtts:// for TLS) or "http" (POST; https:// for TLS).


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
    from sensor.ipnet import HTTP, MQTT

    ca = up.get("ca") or None
    if ca is not None:
        ca = ca.encode()
    if kind == "mqtt":
        return MQTT(
            up.get("url", "mqtt://127.0.0.1:1883"),
            up.get("topic", "atsource/up"),
            up.get("client_id") or client_id,
            up.get("keepalive", 60),
            ca,
            clock,
        )
    if kind == "http":
        return HTTP(up.get("url", "http://127.0.0.1/uplink"), ca, clock)
    raise ValueError("unknown transport")
