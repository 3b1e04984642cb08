"""COSE_Encrypt0 sealer for uplink frame version 1 (docs/frame.md).

Frame: D0 83 | 43 A1 01 0A | A2 04 45 <kid> 06 4n <piv> | bstr(ciphertext || 8-byte tag).
piv = the counter, big-endian, minimal length (0 is 00), below 2^40. nonce = context IV XOR
the piv left-padded to 13 bytes. external_aad = CBOR [1, kid, piv]; AAD = CBOR
["Encrypt0", h'A1010A', external_aad] (RFC 9052 section 5.3; external_aad is a bstr there).

Padding: a record is one CBOR map; pad() appends zero bytes up to the smallest bucket in
BUCKETS that holds it, so every record of a kind has the same length whatever its values. The
receiver decodes exactly one CBOR item and requires every remaining byte to be 00. This is
unambiguous because a CBOR item carries its own length. BUCKETS[1] (33) is the worst case of the
standard window record; anything larger than the last bucket is refused, never sent unpadded.
"""

from micropython import const

from sensor import cbor, ccm

KID_LEN = const(5)
IV_LEN = const(13)
BUCKETS = (16, 33, 64, 128, 256)
PROTECTED = b"\xa1\x01\x0a"
_PREFIX = b"\xd0\x83\x43\xa1\x01\x0a\xa2\x04\x45"
_AAD_PREFIX = b"\x83\x68Encrypt0\x43\xa1\x01\x0a"
_PIV_LIMIT = 1 << 40


def piv_bytes(n):
    """The counter as a partial IV: big-endian, minimal length, 0 -> b'\\x00'."""
    if n < 0 or n >= _PIV_LIMIT:
        raise ValueError("counter range")
    ln = 1
    while n >> (8 * ln):
        ln += 1
    return n.to_bytes(ln, "big")


def make_nonce(context_iv, piv, out=None):
    """context_iv XOR piv left-padded with zeros to 13 bytes."""
    if out is None:
        out = bytearray(IV_LEN)
    out[:] = context_iv
    off = IV_LEN - len(piv)
    for i in range(len(piv)):
        out[off + i] ^= piv[i]
    return out


def external_aad(kid, piv):
    """CBOR [1, kid, piv]: profile version 1."""
    buf = bytearray(b"\x83\x01")
    cbor.head(buf, 2, len(kid))
    buf.extend(kid)
    cbor.head(buf, 2, len(piv))
    buf.extend(piv)
    return bytes(buf)


def enc_structure(ext_aad):
    """CBOR ["Encrypt0", h'A1010A', ext_aad]: the AAD that AES-CCM authenticates."""
    buf = bytearray(_AAD_PREFIX)
    cbor.head(buf, 2, len(ext_aad))
    buf.extend(ext_aad)
    return bytes(buf)


def pad(record, buckets=BUCKETS):
    """Zero-pad an encoded CBOR record to the smallest bucket that holds it."""
    n = len(record)
    for size in buckets:
        if n <= size:
            out = bytearray(size)
            out[:n] = record
            return bytes(out)
    raise ValueError("record too large")


class Sealer:
    def __init__(self, kid, key, context_iv, counter):
        if len(kid) != KID_LEN or len(key) != 16 or len(context_iv) != IV_LEN:
            raise ValueError("sealer parameters")
        self._kid = bytes(kid)
        self._key = bytes(key)
        self._iv = bytes(context_iv)
        self._counter = counter
        self._nonce = bytearray(IV_LEN)

    def seal(self, plaintext):
        """Seal plaintext (already padded) into a frame; uses one counter value."""
        m = len(plaintext) + ccm.TAG_LEN
        if m > 0xFFFF:
            raise ValueError("plaintext too long")
        piv = piv_bytes(self._counter.next())
        nonce = make_nonce(self._iv, piv, self._nonce)
        aad = enc_structure(external_aad(self._kid, piv))
        hdr = bytearray(_PREFIX)
        hdr.extend(self._kid)
        hdr.append(0x06)
        cbor.head(hdr, 2, len(piv))
        hdr.extend(piv)
        cbor.head(hdr, 2, m)
        h = len(hdr)
        frame = bytearray(h + m)
        frame[:h] = hdr
        ccm.encrypt_into(self._key, nonce, aad, plaintext, memoryview(frame)[h:])
        return bytes(frame)
