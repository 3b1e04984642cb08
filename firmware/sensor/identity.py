# The device's identity and secrets, written by `atsource provision` (docs/device.md).
# Values stay in RAM as bytes; never print or log them.
import json

PATH = "/identity.json"


class Identity:
    def __init__(self, kid, key, iv, seed):
        self.kid = kid
        self.key = key
        self.iv = iv
        self.seed = seed


def load(path=PATH):
    """The identity, or None when the device is not provisioned. Raises ValueError if damaged."""
    try:
        with open(path) as f:
            d = json.load(f)
    except OSError:
        return None
    try:
        ident = Identity(
            bytes.fromhex(d["kid"]),
            bytes.fromhex(d["key"]),
            bytes.fromhex(d["iv"]),
            bytes.fromhex(d["seed"]),
        )
    except (KeyError, TypeError, ValueError):
        raise ValueError("identity file damaged")
    if len(ident.kid) != 5 or len(ident.key) != 16 or len(ident.iv) != 13 or len(ident.seed) < 16:
        raise ValueError("identity file damaged")
    return ident
