"""Receiver side of uplink frame version 1: parse, check and open (docs/frame.md).

``parse_and_open`` applies the brief's checks in the brief's order and raises ``FrameRejected``
with a stable reason code at the first failure:

1. ``not-cose``: not tag 16 (exactly ``D0``), not a definite array of 3, protected not a
   bstr, unprotected not a map, ciphertext not a bstr, trailing bytes, or not well-formed
   deterministic CBOR (indefinite lengths, non-shortest heads, truncation, nesting > 16).
2. ``bad-protected``: protected bytes other than ``A1 01 0A``.
3. ``bad-header``: the unprotected map is not exactly ``{4: bstr, 6: bstr}`` in that
   (deterministic) order: any other label (the IV, label 5, included), a duplicate or a
   missing label, or a non-bstr value.
4. ``unknown-kid`` (no key, or a kid that is not 5 bytes) / ``revoked-kid``.
5. ``bad-piv``: empty, over 5 bytes, a leading zero byte, or 2^40 or more.
6. ``replay`` (already accepted) / ``too-old`` (32 or more below the highest accepted).
7. ``bad-tag``: AES-CCM-16-64-128 authentication failed.
8. ``bad-plaintext``: the plaintext is not one CBOR map with int keys followed only by zero
   padding bytes.

The envelope is parsed by the strict hand parser below rather than cbor2, which accepts
indefinite lengths, non-shortest heads and duplicate map keys (keeping the last one), decodes
tags semantically and can raise many exception types on hostile input. Rejecting those makes a
frame's bytes a function of its content. Only ``FrameRejected`` leaves ``parse_and_open`` for
any input bytes; its message is the reason code alone, never key material or plaintext.

The replay state is not changed here: after storing the reading, the caller calls
``entry.replay.accept(opened.piv)`` in the same transaction.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

PROTECTED = b"\xa1\x01\x0a"
KID_LEN = 5
IV_LEN = 13
KEY_LEN = 16
TAG_LEN = 8
MAX_PIV_LEN = 5
PIV_LIMIT = 1 << 40
PROFILE_VERSION = 1
_MAX_DEPTH = 16

REASONS = (
    "not-cose",
    "bad-protected",
    "bad-header",
    "unknown-kid",
    "revoked-kid",
    "bad-piv",
    "replay",
    "too-old",
    "bad-tag",
    "bad-plaintext",
)


class FrameRejected(Exception):
    """A frame failed a receiver check. ``reason`` is one of ``REASONS``; ``kid`` is the
    frame's (public) key id once it is known, so that failures can be counted per kid."""

    def __init__(self, reason: str, kid: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kid = kid


@dataclass
class ReplayWindow:
    """Anti-replay state of one kid: an exact set of accepted counters above a floor.

    ``floor``: every piv at or below it was accepted, or is too old (-1 before the first
    frame). ``seen``: bit i set when ``floor + 1 + i`` was accepted; kept in normal form (bit 0
    clear: a run of accepted counters just above the floor is folded into it). ``highest`` is
    the highest piv accepted. A piv ``size`` or more below ``highest`` is too old; a piv above
    the floor whose bit is set, or at or below the floor and inside the window, is a replay.

    In order, ``seen`` stays 0; it holds only the gaps of honest reordering (at most ``size``
    bits, 8 KiB for the default), so the window can be wide enough for a device's whole
    backlog to arrive in any order through receivers side by side (docs/receiver.md).
    """

    SIZE: ClassVar[int] = 1 << 16
    floor: int = -1
    seen: int = 0
    size: int = field(default=SIZE, compare=False, repr=False)

    @property
    def highest(self) -> int:
        return self.floor + self.seen.bit_length()

    def check(self, piv: int) -> None:
        above = piv - self.floor
        if above > 0:
            if self.seen >> (above - 1) & 1:
                raise FrameRejected("replay")
            return
        if self.highest - piv >= self.size:
            raise FrameRejected("too-old")
        raise FrameRejected("replay")

    def accept(self, piv: int) -> None:
        self.check(piv)
        floor, seen = self.floor, self.seen
        low = max(floor + seen.bit_length(), piv) - self.size  # at or below: too old
        if low > floor:  # the window slides: forget counters that fell out of it
            seen >>= low - floor
            floor = low
        seen |= 1 << (piv - floor - 1)
        run = (~seen & (seen + 1)).bit_length() - 1  # accepted counters just above the floor
        self.floor, self.seen = floor + run, seen >> run

    def seen_bytes(self) -> bytes:
        """``seen`` for a BLOB column: empty for 0, else a format byte and the bits
        little-endian, zlib-compressed when long (counters a device skips at each boot leave
        gaps that stay in the window: mostly ones, a few bytes compressed)."""
        if not self.seen:
            return b""
        raw = self.seen.to_bytes((self.seen.bit_length() + 7) // 8, "little")
        return b"\x01" + zlib.compress(raw, 1) if len(raw) > 64 else b"\x00" + raw

    @classmethod
    def stored(cls, floor: int, seen: bytes | None) -> ReplayWindow:
        if not seen:
            return cls(floor)
        raw = zlib.decompress(seen[1:]) if seen[0] == 1 else seen[1:]
        return cls(floor, int.from_bytes(raw, "little"))


@dataclass
class KeyEntry:
    """What ``lookup(kid)`` returns for a known kid."""

    key: bytes
    context_iv: bytes
    revoked: bool = False
    replay: ReplayWindow = field(default_factory=ReplayWindow)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LEN or len(self.context_iv) != IV_LEN:
            raise ValueError("key must be 16 bytes and context IV 13 bytes")

    def __repr__(self) -> str:  # never print key material
        return f"KeyEntry(revoked={self.revoked}, replay={self.replay})"


@dataclass(frozen=True)
class Opened:
    kid: bytes
    piv: int
    record: dict[int, Any]
    plaintext: bytes = field(repr=False)


@dataclass(frozen=True)
class Envelope:
    protected: bytes
    unprotected: list[tuple[Any, Any]]
    ciphertext: bytes


Lookup = Callable[[bytes], KeyEntry | None]


class _Malformed(Exception):
    pass


class _Map(list[tuple[Any, Any]]):
    """A decoded CBOR map kept as (key, value) pairs: keys may repeat or be unhashable."""


_OTHER = object()  # floats and simple values other than false/true/null
_TAG = object()  # a tagged item (never valid inside a frame)


class _Reader:
    """Strict well-formedness reader: definite lengths, shortest-form heads only."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise _Malformed
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def head(self) -> tuple[int, int, int]:
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 31
        if ai < 24:
            return major, ai, ai
        if ai > 27:
            raise _Malformed  # reserved, or indefinite length / break
        size = 1 << (ai - 24)
        arg = int.from_bytes(self._take(size), "big")
        if major != 7 and arg < (24 if size == 1 else 1 << (4 * size)):
            raise _Malformed  # not the shortest form
        return major, ai, arg

    def item(self, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise _Malformed
        major, ai, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self._take(arg)
        if major == 3:
            try:
                return self._take(arg).decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed from None
        if major in (4, 5) and arg > len(self.data) - self.pos:
            raise _Malformed  # more items than bytes left
        if major == 4:
            return [self.item(depth + 1) for _ in range(arg)]
        if major == 5:
            out = _Map()
            for _ in range(arg):
                k = self.item(depth + 1)
                out.append((k, self.item(depth + 1)))
            return out
        if major == 6:
            self.item(depth + 1)
            return _TAG
        # major 7
        if ai == 24 and arg < 32:
            raise _Malformed
        return {20: False, 21: True, 22: None}.get(arg, _OTHER) if ai < 24 else _OTHER


def decode_envelope(frame: bytes) -> Envelope:
    """Check 1: a well-formed tagged COSE_Encrypt0 and nothing after it."""
    if not isinstance(frame, bytes | bytearray | memoryview):
        raise FrameRejected("not-cose")
    data = bytes(frame)
    if data[:2] != b"\xd0\x83":
        raise FrameRejected("not-cose")
    r = _Reader(data, 2)
    try:
        protected = r.item()
        unprotected = r.item()
        ciphertext = r.item()
    except _Malformed:
        raise FrameRejected("not-cose") from None
    if (
        not isinstance(protected, bytes)
        or not isinstance(unprotected, _Map)
        or not isinstance(ciphertext, bytes)
        or r.pos != len(data)
    ):
        raise FrameRejected("not-cose")
    return Envelope(protected, list(unprotected), ciphertext)


def make_nonce(context_iv: bytes, piv: bytes) -> bytes:
    """context IV XOR the piv left-padded with zeros to 13 bytes (always 13 bytes)."""
    padded = bytes(IV_LEN - len(piv)) + piv
    return bytes(a ^ b for a, b in zip(context_iv, padded, strict=True))


def external_aad(kid: bytes, piv: bytes) -> bytes:
    return cbor2.dumps([PROFILE_VERSION, kid, piv])


def enc_structure(ext_aad: bytes) -> bytes:
    return cbor2.dumps(["Encrypt0", PROTECTED, ext_aad])


_AAD_HEAD = b"\x83\x68Encrypt0\x43" + PROTECTED  # ["Encrypt0", h'A1010A', ...


def _aad(kid: bytes, piv: bytes) -> bytes:
    """``enc_structure(external_aad(kid, piv))`` built directly, for a 5-byte kid and a piv of
    at most 5 bytes (every byte string is then shorter than 24: a one-byte head). A test checks
    it against cbor2 for every piv length."""
    ext = b"\x83\x01\x45" + kid + bytes((0x40 + len(piv),)) + piv
    return _AAD_HEAD + bytes((0x40 + len(ext),)) + ext


@functools.lru_cache(maxsize=4096)
def _ccm(key: bytes) -> AESCCM:
    # Building the cipher object costs more than decrypting a frame: one per key.
    return AESCCM(key, tag_length=TAG_LEN)


def open_ciphertext(key: bytes, nonce: bytes, aad: bytes, ct_and_tag: bytes) -> bytes:
    """AES-CCM-16-64-128 decrypt; FrameRejected('bad-tag') on any failure to authenticate."""
    if not TAG_LEN <= len(ct_and_tag) <= 0xFFFF + TAG_LEN:
        raise FrameRejected("bad-tag")
    try:
        return _ccm(bytes(key)).decrypt(nonce, ct_and_tag, aad)
    except InvalidTag:
        raise FrameRejected("bad-tag") from None


_INT_MIN, _INT_LIMIT = -(1 << 64), 1 << 64  # what a CBOR head (major 0 or 1) can carry


def _flat_record(plaintext: bytes) -> dict[int, Any] | None:
    """The common case through cbor2's C decoder: a flat map of int keys to ints, byte or text
    strings, encoded exactly as cbor2 re-encodes it (so: definite lengths, shortest heads, no
    duplicate keys, no tags, no floats), then zero padding. Any other input returns None and
    goes to the strict reader, which decides; so this accepts nothing the strict reader
    refuses, and returns what it would."""
    try:
        rec = cbor2.loads(plaintext)
    except Exception:
        return None
    if type(rec) is not dict:
        return None
    for k, v in rec.items():
        if type(k) is not int or not _INT_MIN <= k < _INT_LIMIT:
            return None  # (a key out of range came from a bignum tag)
        t = type(v)
        if t is int:
            if not _INT_MIN <= v < _INT_LIMIT:
                return None  # cbor2 would re-encode it as a bignum tag
        elif t is not bytes and t is not str:
            return None
    enc = cbor2.dumps(rec)
    n = len(enc)
    if plaintext[:n] != enc or plaintext.count(0, n) != len(plaintext) - n:
        return None
    return rec


def decode_record(plaintext: bytes) -> dict[int, Any]:
    """One CBOR map with int keys, then only zero bytes (the padding); else bad-plaintext."""
    rec = _flat_record(plaintext)
    return rec if rec is not None else _strict_record(plaintext)


def _strict_record(plaintext: bytes) -> dict[int, Any]:
    r = _Reader(plaintext)
    try:
        item = r.item()
    except _Malformed:
        raise FrameRejected("bad-plaintext") from None
    if plaintext[r.pos :].strip(b"\x00"):
        raise FrameRejected("bad-plaintext")
    if not isinstance(item, _Map):
        raise FrameRejected("bad-plaintext")
    return _to_dict(item)


def _plain(v: Any) -> Any:
    if v is _TAG or v is _OTHER:
        raise FrameRejected("bad-plaintext")  # no tags, no floats
    if isinstance(v, _Map):
        return _to_dict(v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _to_dict(m: _Map) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for k, v in m:
        if type(k) is not int or k in out:
            raise FrameRejected("bad-plaintext")
        out[k] = _plain(v)
    return out


def piv_value(piv: bytes) -> int:
    """Check 5 on its own: the partial IV as an int, or FrameRejected('bad-piv')."""
    if not 1 <= len(piv) <= MAX_PIV_LEN or (len(piv) > 1 and piv[0] == 0):
        raise FrameRejected("bad-piv")
    n = int.from_bytes(piv, "big")
    if n >= PIV_LIMIT:
        raise FrameRejected("bad-piv")
    return n


def _split(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(kid, piv, ciphertext) of a frame laid out exactly as the device writes it:
    ``D0 83 43 A1010A A2 04 45 <kid> 06 <bstr piv> <bstr ciphertext>`` with shortest heads and
    nothing after it. Such bytes pass checks 1 to 3 whatever the strict parser says of them,
    with the same kid, piv and ciphertext; anything else returns None and goes the long way."""
    if data[:9] != _LAYOUT or len(data) < 17 or data[14] != 6:
        return None
    n = data[15] - 0x40
    if not 0 <= n < 24:
        return None
    i = 16 + n
    if i >= len(data):
        return None
    h = data[i]
    if 0x40 <= h < 0x58:
        size, start = h - 0x40, i + 1
    elif h == 0x58 and i + 1 < len(data) and data[i + 1] >= 24:
        size, start = data[i + 1], i + 2
    elif h == 0x59 and (size := int.from_bytes(data[i + 1 : i + 3], "big")) >= 256:
        start = i + 3
    else:
        return None
    if start + size != len(data):
        return None
    return data[9:14], data[16:i], data[start:]


_LAYOUT = b"\xd0\x83\x43" + PROTECTED + b"\xa2\x04\x45"


def _header(frame: bytes) -> tuple[bytes, bytes, bytes]:
    """Checks 1 to 3 on any input: (kid, piv, ciphertext) or FrameRejected."""
    if type(frame) is bytes:
        fast = _split(frame)
        if fast is not None:
            return fast
    env = decode_envelope(frame)
    if env.protected != PROTECTED:
        raise FrameRejected("bad-protected")
    hdr = env.unprotected
    if (
        len(hdr) != 2
        or type(hdr[0][0]) is not int
        or type(hdr[1][0]) is not int
        or hdr[0][0] != 4
        or hdr[1][0] != 6
        or not isinstance(hdr[0][1], bytes)
        or not isinstance(hdr[1][1], bytes)
    ):
        raise FrameRejected("bad-header")
    return hdr[0][1], hdr[1][1], env.ciphertext


def parse_and_open(frame: bytes, lookup: Lookup) -> Opened:
    """Check, authenticate and decrypt one frame. Does not touch the replay state."""
    kid, piv, ciphertext = _header(frame)
    entry = lookup(kid) if len(kid) == KID_LEN else None
    if entry is None:
        raise FrameRejected("unknown-kid", kid)
    if entry.revoked:
        raise FrameRejected("revoked-kid", kid)
    try:
        n = piv_value(piv)
        entry.replay.check(n)
        nonce = (int.from_bytes(entry.context_iv, "big") ^ n).to_bytes(IV_LEN, "big")
        plaintext = open_ciphertext(entry.key, nonce, _aad(kid, piv), ciphertext)
        record = decode_record(plaintext)
    except FrameRejected as e:
        raise FrameRejected(e.reason, kid) from None
    return Opened(kid, n, record, plaintext)
