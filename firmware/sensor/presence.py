# The identifier path: BLE address -> keyed hash under a per-window secret -> a bit in a
# fixed-size bitmap (linear counting). The address lives only inside on_advert(); no list of
# addresses or hashes exists anywhere, and the secret is wiped when the window closes, so nobody
# (the device's owner included, after the fact) can link a phone across windows or test whether
# an address was seen.
#
# Address rotation: a phone that changes its random address inside a window sets two bits and is
# over-counted; docs/privacy.md measures the bias on the shipped scenarios.
import math

from micropython import const

from sensor.rng import Hmac256

_AD_SHORT_NAME = const(0x08)
_AD_FULL_NAME = const(0x09)
_OPT_OUTS = (b"_nomap", b"_optout")


def _ends_with(mv, start, end, suffix):
    n = len(suffix)
    if end - start < n:
        return False
    j = end - n
    for i in range(n):
        if mv[j + i] != suffix[i]:
            return False
    return True


def opted_out(adv):
    """True if the advert carries a local name ending in _nomap or _optout (no copy made)."""
    i = 0
    n = len(adv)
    while i + 1 < n:
        ln = adv[i]
        if ln == 0 or i + 1 + ln > n:
            return False
        t = adv[i + 1]
        if t == _AD_FULL_NAME or t == _AD_SHORT_NAME:
            for s in _OPT_OUTS:
                if _ends_with(adv, i + 2, i + 1 + ln, s):
                    return True
        i += 1 + ln
    return False


def linear_count(zeros, m):
    """Distinct items from the zero bits of an m-bit linear-counting sketch: -m ln(zeros / m)."""
    if zeros < 1:
        zeros = 1  # saturated: report the largest estimate the sketch can give
    return int(-m * math.log(zeros / m) + 0.5)


class Presence:
    def __init__(self, rng, bits=8192, rssi_floor=-90):
        if bits < 64 or bits & (bits - 1):
            raise ValueError("sketch bits must be a power of two >= 64")
        self.rng = rng
        self.bits = bits
        self.rssi_floor = rssi_floor
        self.map = bytearray(bits // 8)
        self._mac = Hmac256(rng.bytes(32))
        self._msg = bytearray(7)  # address type + 6 address bytes, reused
        self.heard = 0  # adverts folded into the sketch this window
        self.skipped = 0  # adverts below the RSSI floor or opted out

    def on_advert(self, addr_type, addr, rssi, adv):
        # Called from the BLE IRQ with memoryviews into the stack's buffers.
        if rssi < self.rssi_floor or opted_out(adv):
            self.skipped += 1
            return
        m = self._msg
        # The type is hashed too: a public and a random address with equal bytes are different
        # devices.
        m[0] = addr_type
        m[1:7] = addr
        d = self._mac.digest(m)
        m[1:7] = b"\x00\x00\x00\x00\x00\x00"
        i = ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) & (self.bits - 1)
        self.map[i >> 3] |= 1 << (i & 7)
        self.heard += 1

    def ones(self):
        """Bits set in the sketch: each address sets at most one (what the gate noises)."""
        zeros = 0
        for b in self.map:
            if b != 0xFF:
                for k in range(8):
                    if not (b >> k) & 1:
                        zeros += 1
        return self.bits - zeros

    def estimate(self):
        """Linear-counting estimate of distinct addresses: -m ln(zero bits / m)."""
        return linear_count(self.bits - self.ones(), self.bits)

    def roll(self):
        """Close the window: the estimate, then wipe bitmap and secret and draw a new secret."""
        n = self.estimate()
        for i in range(len(self.map)):
            self.map[i] = 0
        self._mac.wipe()
        self._mac.rekey(self.rng.bytes(32))
        self.heard = 0
        self.skipped = 0
        return n
