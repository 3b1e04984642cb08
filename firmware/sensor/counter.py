# The message counter (the partial IV of every frame): never reused, across resets, power cuts
# and deep sleep, with few flash writes (docs/uplink.md).
#
# The file holds a ceiling: every value below it may have been used. take() hands out values
# below the ceiling it reserved in RAM; when they run out it first makes a new ceiling (reserve
# values higher) durable and only then uses them. A boot resumes at the stored ceiling, so at
# most `reserve` values are skipped per boot, and nothing is ever handed out twice.
#
# Durability: the new ceiling goes to a temporary file that is closed (durable) and renamed
# over the old one; rename is atomic on LittleFS (both ports), so the file holds the old or the
# new ceiling, never a mix. A CRC guards against any other damage: a damaged counter stops
# sealing (reusing a nonce would break AES-CCM) until the device is re-keyed.
import binascii
import os

from micropython import const

LIMIT = const(1 << 40)  # the partial IV is at most 5 bytes
_MAGIC = b"CTR1"


def _encode(ceiling):
    body = _MAGIC + ceiling.to_bytes(6, "big")  # 2^40 itself fits
    return body + (binascii.crc32(body) & 0xFFFFFFFF).to_bytes(4, "big")


def _decode(data):
    # The ceiling, or -1 when the bytes are not a valid counter record.
    if len(data) != 14 or data[:4] != _MAGIC:
        return -1
    if (binascii.crc32(data[:10]) & 0xFFFFFFFF) != int.from_bytes(data[10:], "big"):
        return -1
    return int.from_bytes(data[4:10], "big")


def _read(path):
    # (ceiling or -1 if damaged, whether the file exists)
    try:
        with open(path, "rb") as f:
            return _decode(f.read(32)), True
    except OSError:
        return -1, False


class Counter:
    def __init__(self, path="/counter", reserve=64, fresh=True):
        # fresh=False: a missing counter file is an error, not a new start. The uplink uses
        # that: provisioning creates the file (its self-test seals a frame), so a counter that
        # vanishes later (a wiped or swapped flash) stops sealing instead of reusing nonces.
        if reserve < 1:
            raise ValueError("reserve")
        self.path = path
        self.reserve = reserve
        self.writes = 0  # durable ceiling writes since this object was made
        ceiling, exists = _read(path)
        if ceiling < 0:
            # Interrupted before the rename: the temporary file holds the newer ceiling (if it
            # is whole), and nothing above the old one was used yet either way.
            tmp, tmp_exists = _read(path + ".tmp")
            if tmp >= 0:
                ceiling = tmp
            elif exists or tmp_exists:
                raise ValueError("counter damaged")
            elif not fresh:
                raise ValueError("counter missing: re-provision the device")
            else:
                ceiling = 0  # never written: a freshly provisioned device
        self._next = ceiling
        self._limit = ceiling  # nothing reserved yet in this boot

    @property
    def ceiling(self):
        return self._limit

    def take(self):
        """The next never-used counter value (reserves and persists a new ceiling as needed)."""
        n = self._next
        if n >= self._limit:
            self._persist(min(n + self.reserve, LIMIT))
            if n >= self._limit:
                raise ValueError("counter exhausted")
        self._next = n + 1
        return n

    next = take  # the name the sealer calls

    def _persist(self, ceiling):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(_encode(ceiling))
        os.rename(tmp, self.path)
        self.writes += 1
        self._limit = ceiling
