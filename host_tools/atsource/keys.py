"""Per-device key material for uplink frame version 1 (docs/frame.md).

The host draws a random 16-byte master secret per device and key generation; only the derived
AES key and context IV go to the device:

    key        = HKDF-SHA256(salt = empty, master, info = CBOR [kid, null, 10, "Key", 16], 16)
    context IV = HKDF-SHA256(salt = empty, master, info = CBOR [kid, null, 10, "IV", 13], 13)

(the OSCORE construction of RFC 8613 section 3.2.1, with the kid as the id and no id context).
"""

from __future__ import annotations

import os

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALG_AES_CCM_16_64_128 = 10
MASTER_LEN = 16
KEY_LEN = 16
IV_LEN = 13
KID_LEN = 5


def hkdf_info(kid: bytes, label: str, length: int) -> bytes:
    """CBOR [kid, null, 10, label, length]."""
    return cbor2.dumps([kid, None, ALG_AES_CCM_16_64_128, label, length])


def derive_param(master: bytes, salt: bytes, kid: bytes, label: str, length: int) -> bytes:
    """One HKDF-SHA256 output (exposed for the RFC 8613 test vector, which has a salt)."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(), length=length, salt=salt, info=hkdf_info(kid, label, length)
    )
    return hkdf.derive(master)


def derive(master: bytes, kid: bytes) -> tuple[bytes, bytes]:
    """Return (key, context_iv) for a device's kid."""
    if len(master) != MASTER_LEN:
        raise ValueError(f"master secret must be {MASTER_LEN} bytes")
    if len(kid) != KID_LEN:
        raise ValueError(f"kid must be {KID_LEN} bytes")
    key = derive_param(master, b"", kid, "Key", KEY_LEN)
    iv = derive_param(master, b"", kid, "IV", IV_LEN)
    return key, iv


def new_master() -> bytes:
    """A fresh random master secret."""
    return os.urandom(MASTER_LEN)


def make_kid(device_number: int, generation: int) -> bytes:
    """kid = 4-byte big-endian device number || 1-byte key generation."""
    if not 0 <= device_number < 1 << 32:
        raise ValueError("device number must be in 0 .. 2^32-1")
    if not 0 <= generation < 256:
        raise ValueError("key generation must be in 0 .. 255")
    return device_number.to_bytes(4, "big") + bytes([generation])


def split_kid(kid: bytes) -> tuple[int, int]:
    """Inverse of make_kid: (device_number, generation)."""
    if len(kid) != KID_LEN:
        raise ValueError(f"kid must be {KID_LEN} bytes")
    return int.from_bytes(kid[:4], "big"), kid[4]
