# Randomness for per-window secrets and noise: an HMAC-SHA256 generator keyed with the seed the
# host provisioned, each block mixing in os.urandom. A weak hardware RNG (ESP32 with the radio
# off, RP2040's ring oscillator) then cannot make secrets or noise predictable to anyone without
# the seed, and a captured seed alone does not predict past output that mixed in urandom.
import hashlib
import os

from micropython import const

_BLOCK = const(64)


class Hmac256:
    # HMAC-SHA256 with the key's pads kept, for many short messages under one key.
    def __init__(self, key):
        self.ipad = bytearray(_BLOCK)
        self.opad = bytearray(_BLOCK)
        self.rekey(key)

    def rekey(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            self.ipad[i] = k ^ 0x36
            self.opad[i] = k ^ 0x5C

    def wipe(self):
        for i in range(_BLOCK):
            self.ipad[i] = 0
            self.opad[i] = 0

    def digest(self, msg):
        inner = hashlib.sha256(self.ipad)
        inner.update(msg)
        outer = hashlib.sha256(self.opad)
        outer.update(inner.digest())
        return outer.digest()


def hmac_sha256(key, msg):
    return Hmac256(key).digest(msg)


class Rng:
    def __init__(self, seed):
        self._mac = Hmac256(seed)
        self._ctr = 0
        self._buf = b""
        self._pos = 0

    def bytes(self, n):
        out = bytearray(n)
        i = 0
        while i < n:
            if self._pos >= len(self._buf):
                self._ctr += 1
                self._buf = self._mac.digest(self._ctr.to_bytes(8, "big") + os.urandom(16))
                self._pos = 0
            take = min(n - i, len(self._buf) - self._pos)
            out[i : i + take] = self._buf[self._pos : self._pos + take]
            self._pos += take
            i += take
        return bytes(out)

    def u32(self):
        return int.from_bytes(self.bytes(4), "big")

    def geometric2(self, alpha32, cap=100000):
        """Two-sided geometric noise: P(x) proportional to alpha^|x|.

        alpha32 = round(alpha * 2**32), alpha = exp(-epsilon / sensitivity). The difference of
        two geometric draws (failures before a success of probability 1 - alpha) has exactly
        this law; each draw is a run of integer comparisons, no floating point.
        """
        return self._geometric(alpha32, cap) - self._geometric(alpha32, cap)

    def _geometric(self, alpha32, cap):
        n = 0
        while n < cap and self.u32() < alpha32:
            n += 1
        return n
