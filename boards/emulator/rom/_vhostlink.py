# hostlink: the emulated board's uplink to the emulator host. A frame handed to send() goes to
# the host's on_frame (a file, a broker, the receiver); True means it was delivered. It fails
# while the scenario's network is down. Real boards have no such module (sensor.transport falls
# back to MQTT or HTTP there).
import binascii

import _board as _b


def send(frame):
    r = _b.req({"q": "link", "f": binascii.hexlify(frame).decode(), "now": [_b.ms, _b.us]})
    return r is True
