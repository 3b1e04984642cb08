"""Receiver: parse_and_open's checks in the brief's order, replay window, keys, hostile input."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from atsource import frame as rx
from atsource import keys
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from fakes import Counter, mutate, mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor import cbor, sealer

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "cose-aes-ccm.json").read_text())
h = bytes.fromhex

KID = keys.make_kid(0x00012345, 1)
OTHER_KID = keys.make_kid(0x00012345, 2)
REVOKED_KID = keys.make_kid(0x00000009, 0)
KEY, IV = keys.derive(bytes(range(16)), KID)
RECORD = {0: 1767225600, 1: 900, 2: h("5a3c9e01"), 3: -512, 6: 3}
PT = sealer.pad(cbor.dumps(RECORD))

# Extended fuzzing: ATSOURCE_FUZZ_EXAMPLES=100000 pytest tests/unit/test_frame.py -k fuzz
_FUZZ_N = os.environ.get("ATSOURCE_FUZZ_EXAMPLES")
FUZZ = (
    settings(max_examples=int(_FUZZ_N), deadline=None, suppress_health_check=list(HealthCheck))
    if _FUZZ_N
    else settings()
)


class Registry:
    """A lookup with per-kid state, as the store will provide."""

    def __init__(self) -> None:
        self.entries = {
            KID: rx.KeyEntry(KEY, IV),
            REVOKED_KID: rx.KeyEntry(KEY, IV, revoked=True),
        }
        self.calls: list[bytes] = []

    def __call__(self, kid: bytes) -> rx.KeyEntry | None:
        self.calls.append(kid)
        return self.entries.get(kid)


def seal(n: int, pt: bytes = PT, kid: bytes = KID) -> bytes:
    return sealer.Sealer(kid, KEY, IV, Counter(n)).seal(pt)


def craft(
    piv: bytes = b"\x07",
    kid: Any = KID,
    *,
    uhdr: Any = None,
    prot: bytes = rx.PROTECTED,
    pt: bytes = PT,
    key: bytes = KEY,
    iv: bytes = IV,
) -> bytes:
    """A frame built with cbor2 and cryptography (independent of the firmware), correctly
    authenticated whenever the piv fits the nonce, so only the intended check can fail."""
    p = piv if isinstance(piv, bytes) and len(piv) <= 13 else b""
    k = kid if isinstance(kid, bytes) else b""
    nonce = rx.make_nonce(iv, p)
    aad = rx.enc_structure(rx.external_aad(k, p))
    ct = AESCCM(key, tag_length=8).encrypt(nonce, pt, aad)
    u = {4: kid, 6: piv} if uhdr is None else uhdr
    return cbor2.dumps(cbor2.CBORTag(16, [prot, u, ct]))


def reason(f: Any, lookup: Callable[[bytes], rx.KeyEntry | None] | None = None) -> str:
    with pytest.raises(rx.FrameRejected) as e:
        rx.parse_and_open(f, lookup or Registry())
    assert str(e.value) == e.value.reason and e.value.args == (e.value.reason,)
    assert e.value.reason in rx.REASONS
    return e.value.reason


# --- vectors ------------------------------------------------------------------------------------


def test_cose_wg_enc01_vector() -> None:
    v = VECTORS["cose-wg aes-ccm-enc-01"]
    msg = h(v["message"])
    env = rx.decode_envelope(msg)
    assert env.protected == h(v["protected"]) == rx.PROTECTED
    assert env.unprotected == [(5, h(v["iv"]))]
    assert rx.enc_structure(h(v["external_aad"])) == h(v["aad"])
    assert rx.open_ciphertext(h(v["key"]), h(v["iv"]), h(v["aad"]), env.ciphertext) == h(
        v["plaintext"]
    )
    assert reason(msg) == "bad-header"  # a full IV (label 5) is refused by the profile


def test_rfc9052_c42_partial_iv_vector() -> None:
    v = VECTORS["RFC 9052 C.4.2 partial IV"]
    key, ctx_iv, piv = h(v["key"]), h(v["context_iv"]), h(v["partial_iv"])
    env = rx.decode_envelope(h(v["message"]))
    assert env.unprotected == [(6, piv)]
    assert rx.piv_value(piv) == 0x61A7
    nonce = rx.make_nonce(ctx_iv, piv)
    assert nonce == h(v["nonce"])
    assert rx.enc_structure(b"") == h(v["aad"])
    assert rx.open_ciphertext(key, nonce, h(v["aad"]), env.ciphertext) == h(v["plaintext"])
    with pytest.raises(rx.FrameRejected, match="^bad-tag$"):
        rx.open_ciphertext(key, nonce, h(v["aad"]) + b"\x00", env.ciphertext)
    assert reason(h(v["message"])) == "bad-header"  # no kid: not our profile
    # The same key, context IV and counter in our profile (kid present, external_aad bound).
    f = sealer.Sealer(KID, key, ctx_iv, Counter(0x61A7)).seal(h(v["plaintext"]) + b"")
    entry = rx.KeyEntry(key, ctx_iv)
    with pytest.raises(rx.FrameRejected, match="^bad-plaintext$"):  # vector text is not CBOR
        rx.parse_and_open(f, lambda kid: entry)
    f = sealer.Sealer(KID, key, ctx_iv, Counter(0x61A7)).seal(PT)
    assert rx.parse_and_open(f, lambda kid: entry).piv == 0x61A7


def test_rfc8613_hkdf_vector() -> None:
    v = VECTORS["RFC 8613 C.1.1 HKDF derivation"]
    assert keys.hkdf_info(b"", "Key", 16) == h(v["info_key"])
    assert keys.hkdf_info(b"", "IV", 13) == h(v["info_iv"])
    master, salt = h(v["master_secret"]), h(v["master_salt"])
    assert keys.derive_param(master, salt, b"", "Key", 16) == h(v["sender_key"])
    assert keys.derive_param(master, salt, b"", "IV", 13) == h(v["common_iv"])


def test_derive_profile() -> None:
    master = bytes(range(16))
    key, iv = keys.derive(master, KID)
    assert (len(key), len(iv)) == (16, 13)
    assert keys.hkdf_info(KID, "Key", 16) == h("85 45") + KID + h("f6 0a 634b6579 10")
    assert key == keys.derive_param(master, b"", KID, "Key", 16)
    assert iv == keys.derive_param(master, b"", KID, "IV", 13)
    # An empty salt is HKDF's default (a HashLen string of zeros).
    assert key == keys.derive_param(master, bytes(32), KID, "Key", 16)
    assert keys.derive(master, OTHER_KID)[0] != key
    assert keys.derive(keys.new_master(), KID) != (key, iv)
    with pytest.raises(ValueError):
        keys.derive(master[:15], KID)
    with pytest.raises(ValueError):
        keys.derive(master, KID[:4])


def test_kid() -> None:
    assert keys.make_kid(0x01020304, 5) == h("0102030405")
    assert keys.split_kid(h("0102030405")) == (0x01020304, 5)
    for bad in ((-1, 0), (1 << 32, 0), (0, -1), (0, 256)):
        with pytest.raises(ValueError):
            keys.make_kid(*bad)
    with pytest.raises(ValueError):
        keys.split_kid(b"1234")


# --- each check -------------------------------------------------------------------------------


def test_valid_frame_opens_without_touching_replay_state() -> None:
    reg = Registry()
    opened = rx.parse_and_open(seal(7), reg)
    assert (opened.kid, opened.piv, opened.record) == (KID, 7, RECORD)
    assert reg.entries[KID].replay == rx.ReplayWindow()
    assert rx.parse_and_open(craft(b"\x07"), reg).record == RECORD  # cbor2 + cryptography built
    assert rx.parse_and_open(bytearray(seal(7)), reg).piv == 7
    assert rx.parse_and_open(memoryview(seal(7)), reg).piv == 7


def _tagged(items: Any) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(16, items))


GOOD = seal(7)
NOT_COSE = {
    "empty": b"",
    "str input": "d083",
    "untagged": GOOD[1:],
    "tag 17": b"\xd1" + GOOD[1:],
    "tag 16 non-minimal": b"\xd8\x10" + GOOD[1:],
    "array of 4": _tagged([rx.PROTECTED, {4: KID, 6: b"\x07"}, b"x" * 8, b""]),
    "array of 2": _tagged([rx.PROTECTED, {4: KID, 6: b"\x07"}]),
    "indefinite array": b"\xd0\x9f" + GOOD[2:] + b"\xff",
    "protected as map": _tagged([{1: 10}, {4: KID, 6: b"\x07"}, b"x" * 8]),
    "unprotected as array": _tagged([rx.PROTECTED, [4, KID], b"x" * 8]),
    "detached ciphertext": _tagged([rx.PROTECTED, {4: KID, 6: b"\x07"}, None]),
    "trailing byte": GOOD + b"\x00",
    "trailing item": GOOD + b"\xa0",
    "truncated": GOOD[:-1],
    "non-minimal ciphertext length": GOOD[:20] + b"\x59\x00" + GOOD[21:],
    "non-minimal map count": GOOD[:6] + b"\xb8\x02" + GOOD[7:],
    "indefinite map": GOOD[:6] + b"\xbf" + GOOD[7:20] + b"\xff" + GOOD[20:],
    "huge length": b"\xd0\x83\x5b" + b"\xff" * 8,
    "reserved ai": b"\xd0\x83\x5c",
    "bad utf-8 label": _tagged(
        [rx.PROTECTED, {"\udcff".encode("utf-8", "surrogatepass"): 1}, b""]
    ).replace(b"\x43\xed\xb3\xbf", b"\x63\xed\xb3\xbf"),
    "deep nesting": b"\xd0\x83\x43\xa1\x01\x0a\xa1\x01" + b"\x81" * 40 + b"\x00\x40",
}


@pytest.mark.parametrize("name", sorted(NOT_COSE))
def test_not_cose(name: str) -> None:
    assert reason(NOT_COSE[name]) == "not-cose"


@pytest.mark.parametrize(
    "prot", [b"", b"\xa0", b"\xa1\x01\x18\x0a", b"\xa1\x01\x0b", b"\xa1\x01\x18\x1e", b"\xa1\x01"]
)
def test_bad_protected(prot: bytes) -> None:
    assert reason(craft(prot=prot)) == "bad-protected"


BAD_HEADERS = {
    "label 5 (IV)": {4: KID, 5: IV, 6: b"\x07"},
    "only label 5": {5: IV},
    "label 1 (alg) unprotected": {1: 10, 4: KID, 6: b"\x07"},
    "label 3": {3: 0, 4: KID, 6: b"\x07"},
    "text label": {4: KID, 6: b"\x07", "x": 1},
    "labels swapped": {6: b"\x07", 4: KID},
    "missing piv": {4: KID},
    "missing kid": {6: b"\x07"},
    "empty": {},
    "kid as text": {4: "kid", 6: b"\x07"},
    "piv as int": {4: KID, 6: 7},
    "piv tagged": {4: KID, 6: cbor2.CBORTag(24, b"\x07")},
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_bad_header(name: str) -> None:
    assert reason(craft(uhdr=BAD_HEADERS[name])) == "bad-header"


def test_duplicate_label_is_bad_header() -> None:
    f = craft()
    dup = f.replace(b"\xa2\x04\x45" + KID, b"\xa3\x04\x45" + KID + b"\x04\x45" + KID)
    assert reason(dup) == "bad-header"


def test_unknown_and_revoked_kid() -> None:
    reg = Registry()
    assert reason(seal(1, kid=OTHER_KID), reg) == "unknown-kid"
    assert reason(seal(1, kid=REVOKED_KID), reg) == "revoked-kid"
    assert reg.calls == [OTHER_KID, REVOKED_KID]
    short = Registry()
    assert reason(craft(kid=KID[:4]), short) == "unknown-kid"
    assert reason(craft(kid=KID + b"\x00"), short) == "unknown-kid"
    assert short.calls == []  # only 5-byte kids reach the registry


@pytest.mark.parametrize(
    "piv",
    [b"", b"\x00\x07", b"\x00", b"\x01" + bytes(5), b"\xff" * 6, (1 << 40).to_bytes(6, "big")],
    ids=["empty", "leading-zero", "ok-zero", "6-bytes", "6-bytes-ff", "2^40"],
)
def test_piv_format(piv: bytes) -> None:
    f = craft(piv)
    if piv == b"\x00":
        assert rx.parse_and_open(f, Registry()).piv == 0
    else:
        assert reason(f) == "bad-piv"


def test_piv_value() -> None:
    assert rx.piv_value(b"\xff" * 5) == 2**40 - 1
    for bad in (b"", b"\x00\x01", bytes(6), (1 << 40).to_bytes(6, "big")):
        with pytest.raises(rx.FrameRejected, match="^bad-piv$"):
            rx.piv_value(bad)


def test_bad_tag_is_attributed_to_the_kid() -> None:
    bad_key = rx.KeyEntry(bytes(16), IV)
    with pytest.raises(rx.FrameRejected) as e:
        rx.parse_and_open(seal(3), lambda kid: bad_key)
    assert (e.value.reason, e.value.kid) == ("bad-tag", KID)
    other_iv = rx.KeyEntry(KEY, bytes(13))
    assert reason(seal(3), lambda kid: other_iv) == "bad-tag"
    assert reason(craft(pt=b""), lambda kid: other_iv) == "bad-tag"


@pytest.mark.parametrize(
    "pt",
    [
        b"",
        b"\x00",
        b"\x80",  # an array, not a map
        b"\xa1\x00\x00\x01",  # non-zero after the map
        b"\xa1\x61x\x00",  # text key
        b"\xa1\x00\xf9\x3c\x00",  # float value
        b"\xa1\x00\xc1\x00",  # tag value
        b"\xa2\x00\x00\x00\x01",  # duplicate key
        b"\xa1\x00\x18\x01",  # non-minimal
        b"\xa1\x00",  # truncated
    ],
)
def test_bad_plaintext(pt: bytes) -> None:
    assert reason(craft(pt=pt)) == "bad-plaintext"


def test_record_may_nest_lists_and_maps() -> None:
    rec = {0: [1, {2: b"x"}], 1: None, 2: True, 3: "t"}
    assert rx.parse_and_open(craft(pt=cbor.dumps(rec)), Registry()).record == rec


def test_rejections_follow_the_brief_order() -> None:
    both = craft(prot=b"\xa0", uhdr={4: KID, 5: IV, 6: b"\x07"})
    assert reason(both + b"\x00") == "not-cose"
    assert reason(both) == "bad-protected"
    assert reason(craft(b"\x00\x07", kid=OTHER_KID, uhdr={4: OTHER_KID, 5: IV})) == "bad-header"
    assert reason(craft(b"\x00\x07", kid=OTHER_KID)) == "unknown-kid"
    assert reason(craft(b"\x00\x07", kid=REVOKED_KID)) == "revoked-kid"
    reg = Registry()
    reg.entries[KID].replay = rx.ReplayWindow(size=32)
    reg.entries[KID].replay.accept(100)
    assert reason(craft(b"\x00\x07", key=bytes(16)), reg) == "bad-piv"
    assert reason(craft(b"\x07", key=bytes(16)), reg) == "too-old"
    assert reason(craft(b"\x64", key=bytes(16)), reg) == "replay"
    assert reason(craft(b"\x65", key=bytes(16)), reg) == "bad-tag"
    assert reason(craft(b"\x65", pt=b"\x01"), reg) == "bad-plaintext"


# --- replay window ------------------------------------------------------------------------------


def receive(reg: Registry, f: bytes) -> str:
    """What the store does: open, then accept in the same transaction as the reading."""
    try:
        opened = rx.parse_and_open(f, reg)
    except rx.FrameRejected as e:
        return e.reason
    reg.entries[opened.kid].replay.accept(opened.piv)
    return "ok"


def test_replay_and_reordering() -> None:
    """The rule with a window of 32 (the default is ReplayWindow.SIZE; the rule is the same)."""
    reg = Registry()
    reg.entries[KID].replay = rx.ReplayWindow(size=32)
    frames = {n: seal(n) for n in (0, 10, 11, 12, 40, 41, 42, 43, 200)}
    assert receive(reg, frames[10]) == "ok"
    assert receive(reg, frames[10]) == "replay"
    assert receive(reg, frames[12]) == "ok"
    assert receive(reg, frames[11]) == "ok"  # late, inside the window: accepted once
    assert receive(reg, frames[11]) == "replay"
    assert receive(reg, frames[0]) == "ok"
    assert receive(reg, frames[42]) == "ok"
    assert receive(reg, frames[11]) == "replay"  # 31 below 42: still inside, already seen
    assert receive(reg, frames[41]) == "ok"
    assert receive(reg, frames[40]) == "ok"
    assert receive(reg, frames[0]) == "too-old"
    assert receive(reg, frames[200]) == "ok"
    assert receive(reg, frames[43]) == "too-old"  # 157 below: outside the window
    w = reg.entries[KID].replay
    assert (w.highest, w.floor, w.seen) == (200, 168, 1 << 31)  # 169..199 still open


def test_the_default_window_takes_a_whole_backlog_in_any_order() -> None:
    """Two receivers on a shared subscription commit one device's backlog out of order: every
    frame of a 2,000-frame backlog, in a shuffled order, is accepted once; then each is a
    replay; the state stays small (only the gaps are kept)."""
    import random

    w = rx.ReplayWindow()
    for p in range(5000):  # the device's life before the outage, in order: nothing kept
        w.accept(p)
    assert (w.floor, w.seen) == (4999, 0)
    order = list(range(5000, 7000))
    random.Random(1).shuffle(order)
    for p in order:
        w.accept(p)
    assert (w.floor, w.seen, w.highest) == (6999, 0, 6999)
    for p in (5000, 6500, 6999):
        with pytest.raises(rx.FrameRejected, match="^replay$"):
            w.check(p)
    w.accept(7001)
    assert (w.floor, w.seen) == (6999, 0b10)  # 7000 still open, once
    w.accept(7000)
    assert (w.floor, w.seen) == (7001, 0)
    w.accept(7001 + rx.ReplayWindow.SIZE + 5)
    with pytest.raises(rx.FrameRejected, match="^too-old$"):
        w.check(7002)  # fell out of the window: refused for good
    assert len(w.seen_bytes()) <= rx.ReplayWindow.SIZE // 8


def test_window_edges() -> None:
    w = rx.ReplayWindow(size=32)
    w.accept(0)
    w.accept(31)
    w.check(1)  # 30 below: inside
    with pytest.raises(rx.FrameRejected, match="^replay$"):
        w.check(0)  # 31 below: inside the window, seen
    w.accept(32)
    with pytest.raises(rx.FrameRejected, match="^too-old$"):
        w.check(0)  # 32 below: outside
    w.check(1)
    w.accept(2**40 - 1)  # a jump of 2^40 slides the window without a 2^40-bit int
    assert (w.highest, w.floor, w.seen) == (2**40 - 1, 2**40 - 33, 1 << 31)
    w.accept(2**40 - 33 + 1)
    assert (w.floor, w.seen) == (2**40 - 32, 1 << 30)  # folded into the floor
    assert rx.ReplayWindow.stored(w.floor, w.seen_bytes()) == w  # persistable: int and bytes
    gappy = rx.ReplayWindow()
    for p in range(0, 60000, 7):  # counters skipped at each boot leave gaps for good
        gappy.accept(p)
    assert len(gappy.seen_bytes()) < 200  # compressed: mostly ones
    assert rx.ReplayWindow.stored(gappy.floor, gappy.seen_bytes()) == gappy


@pytest.mark.parametrize("size", [32, 7])
@given(pivs=st.lists(st.integers(min_value=0, max_value=120), max_size=80))
def test_window_matches_a_reference_model(size: int, pivs: list[int]) -> None:
    w = rx.ReplayWindow(size=size)
    seen: set[int] = set()
    highest = -1
    for p in pivs:
        if p > highest:
            expect = "ok"
        elif highest - p >= size:
            expect = "too-old"
        else:
            expect = "replay" if p in seen else "ok"
        try:
            w.accept(p)
            got = "ok"
        except rx.FrameRejected as e:
            got = e.reason
        assert got == expect
        if got == "ok":
            seen.add(p)
            highest = max(highest, p)
        assert w.highest == highest
        assert 0 <= w.seen < 2**size and not w.seen & 1  # bounded, in normal form


# --- hostile input -------------------------------------------------------------------------------


def test_every_single_bit_flip_is_rejected() -> None:
    f = seal(0x1234)
    reasons = set()
    for i in range(len(f) * 8):
        g = bytearray(f)
        g[i // 8] ^= 1 << (i % 8)
        reasons.add(reason(bytes(g)))
    assert reasons >= {"not-cose", "bad-protected", "bad-header", "unknown-kid", "bad-tag"}


def test_every_truncation_and_extension_is_rejected() -> None:
    f = seal(5)
    for n in range(len(f)):
        assert reason(f[:n]) == "not-cose"
    for tail in (b"\x00", b"\xff", f):
        assert reason(f + tail) == "not-cose"


def test_messages_never_carry_secrets() -> None:
    reg = Registry()
    for f in (seal(1), craft(pt=b"\x01")):
        tampered = f[:-1] + bytes([f[-1] ^ 1])
        for g in (tampered, f):
            try:
                rx.parse_and_open(g, reg)
            except rx.FrameRejected as e:
                text = repr(e) + str(e)
                assert KEY.hex() not in text and PT.hex() not in text
    assert KEY.hex() not in repr(reg.entries[KID]) and "key" not in repr(reg.entries[KID])


def _open_or_reject(data: bytes) -> None:
    reg = Registry()
    reg.entries[KID].replay.accept(50)
    try:
        opened = rx.parse_and_open(data, reg)
    except rx.FrameRejected as e:
        assert e.reason in rx.REASONS
        return
    assert opened.kid == KID


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _open_or_reject(data)
    _open_or_reject(b"\xd0\x83" + data)
    _open_or_reject(b"\xd0\x83\x43\xa1\x01\x0a" + data)


MUTATION = mutations(200, 12)


@FUZZ
@given(
    st.integers(min_value=0, max_value=2**40 - 1),
    st.sampled_from([GOOD, seal(60), craft(b"\x33"), craft(pt=b"")]),
    st.lists(MUTATION, min_size=1, max_size=4),
)
def test_fuzz_mutated_frames(n: int, base: bytes, muts: list[tuple[str, int, bytes]]) -> None:
    for f in (base, seal(n)):
        _open_or_reject(mutate(f, muts))
