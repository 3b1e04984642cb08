"""AES-CCM for COSE AES-CCM-16-64-128 (RFC 3610, RFC 9053 alg 10), from AES-ECB only.

Parameters: 16-byte key, 13-byte nonce (L = 2, so plaintext below 64 KiB), 8-byte tag (M = 8).
The boards' cryptolib has ECB and CBC but no CTR, so both halves are built from ECB blocks:
the tag is the CBC-MAC over B0 || encoded AAD length || AAD || plaintext (each part
zero-padded to whole blocks) XOR S0, the keystream is S_i = E(A_i) for i = 1, 2, ...

One cryptolib.aes object per call, used for encryption only (cryptolib objects cannot switch
direction). The block buffers are module-level: not re-entrant (no threads, no ISRs).
"""

import cryptolib
from micropython import const

_ECB = const(1)
TAG_LEN = const(8)
NONCE_LEN = const(13)
_FLAGS_MAC = const(0x19)  # ((M - 2) // 2) << 3 | (L - 1)
_FLAGS_ADATA = const(0x40)
_FLAGS_CTR = const(0x01)  # L - 1

_X = bytearray(16)  # CBC-MAC state
_A = bytearray(16)  # counter block
_S = bytearray(16)  # keystream block
_S0 = bytearray(16)  # keystream block 0 (tag mask)


def _absorb(aes, p, data):
    # XOR data into the CBC-MAC state from offset p; encrypt each full block.
    x = _X
    for b in data:
        x[p] ^= b
        p += 1
        if p == 16:
            aes.encrypt(x, x)
            p = 0
    return p


def _mac(aes, nonce, aad, msg):
    x = _X
    n = len(msg)
    x[0] = _FLAGS_MAC | (_FLAGS_ADATA if len(aad) else 0)
    x[1:14] = nonce
    x[14] = n >> 8
    x[15] = n & 0xFF
    aes.encrypt(x, x)
    a = len(aad)
    if a:
        if a < 0xFF00:
            p = _absorb(aes, 0, a.to_bytes(2, "big"))
        else:
            p = _absorb(aes, 0, b"\xff\xfe" + a.to_bytes(4, "big"))
        if _absorb(aes, p, aad):
            aes.encrypt(x, x)
    if _absorb(aes, 0, msg):
        aes.encrypt(x, x)


def _ctr(aes, nonce, src, dst):
    # dst[i] = src[i] ^ S_(1 + i // 16)[i % 16]; also leaves S0 in _S0.
    a = _A
    s = _S
    a[0] = _FLAGS_CTR
    a[1:14] = nonce
    a[14] = 0
    a[15] = 0
    aes.encrypt(a, _S0)
    n = len(src)
    i = 0
    ctr = 1
    while i < n:
        a[14] = ctr >> 8
        a[15] = ctr & 0xFF
        aes.encrypt(a, s)
        j = 0
        while j < 16 and i < n:
            dst[i] = src[i] ^ s[j]
            i += 1
            j += 1
        ctr += 1


def _check(key, nonce, n):
    if len(key) != 16 or len(nonce) != NONCE_LEN or n > 0xFFFF:
        raise ValueError("ccm parameters")


def encrypt_into(key, nonce, aad, plaintext, out):
    """Write ciphertext || tag (len(plaintext) + 8 bytes) into the writable buffer out."""
    n = len(plaintext)
    _check(key, nonce, n)
    if len(out) != n + TAG_LEN:
        raise ValueError("out length")
    aes = cryptolib.aes(key, _ECB)
    _mac(aes, nonce, aad, plaintext)
    _ctr(aes, nonce, plaintext, out)
    x = _X
    s0 = _S0
    for i in range(TAG_LEN):
        out[n + i] = x[i] ^ s0[i]


def encrypt(key, nonce, aad, plaintext):
    """Return ciphertext || 8-byte tag."""
    out = bytearray(len(plaintext) + TAG_LEN)
    encrypt_into(key, nonce, aad, plaintext, memoryview(out))
    return bytes(out)


def decrypt(key, nonce, aad, ct_and_tag):
    """Return the plaintext, or None if the tag does not verify (or the input is too short)."""
    n = len(ct_and_tag) - TAG_LEN
    if n < 0:
        return None
    _check(key, nonce, n)
    src = memoryview(ct_and_tag)
    out = bytearray(n)
    aes = cryptolib.aes(key, _ECB)
    _ctr(aes, nonce, src[:n], out)
    _mac(aes, nonce, aad, out)
    x = _X
    s0 = _S0
    diff = 0
    for i in range(TAG_LEN):
        diff |= (x[i] ^ s0[i]) ^ src[n + i]
    if diff:
        return None
    return bytes(out)
