"""Property-based fuzz of the receiver (hypothesis): no input crashes it or slips through.

The input fuzzers run ``ATSOURCE_FUZZ_EXAMPLES`` examples each (default 2000, so CI stays
fast; the two structural properties a quarter of that). The extended run uses 100000:

    ATSOURCE_FUZZ_EXAMPLES=100000 .venv/bin/pytest -q tests/unit/test_receiver_fuzz.py
"""

from __future__ import annotations

import functools
import json
import os
import random
from pathlib import Path
from typing import Any

import cbor2
import pytest
from atsource import frame as fr
from atsource import keys
from atsource.cli import main as cli_main
from atsource.frame import KeyEntry, ReplayWindow, enc_structure, external_aad, make_nonce
from atsource.receiver import RECEIVER_REASONS, FileSource, Receiver, write_capture
from atsource.store import SQLiteStore
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from fakes import Counter, mutate, mutations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sensor import cbor, sealer

N = int(os.environ.get("ATSOURCE_FUZZ_EXAMPLES", "2000"))
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=_SLOW_OK)
# The two structural properties cost more per example (many frames, nested records).
FUZZ_SLOW = settings(FUZZ, max_examples=max(1, N // 4))

KID = keys.make_kid(0x00012345, 1)
REVOKED = keys.make_kid(9, 0)
KEY, IV = keys.derive(bytes(range(16)), KID)
REC = {0: 1780272000, 1: 900, 2: bytes.fromhex("5a3c9e01"), 7: 1, 3: 2153}
PT = sealer.pad(cbor.dumps(REC))
ENTRIES = {KID: KeyEntry(KEY, IV), REVOKED: KeyEntry(KEY, IV, revoked=True)}


@functools.lru_cache(maxsize=4096)
def seal(n: int, pt: bytes = PT, kid: bytes = KID) -> bytes:
    return sealer.Sealer(kid, KEY, IV, Counter(n)).seal(pt)


def new_receiver() -> Receiver:
    return Receiver(SQLiteStore(":memory:"), ENTRIES.get)


# Frames whose receiver outcome, at piv 40 with 50 already accepted, is one known reason.
SEEDS = [seal(40), seal(60), seal(61, b"\xa1\x00\x00"), seal(62, kid=REVOKED), seal(2**39)]


def check(rx: Receiver, data: Any) -> None:
    res = rx.submit(data)
    assert res.reason is None or res.reason in RECEIVER_REASONS
    assert res.reason != "internal-error"
    if res.accepted:
        # Only a genuine frame of ours opens: authenticated, so its record is one we sealed.
        assert res.kid == KID and res.reading is not None
        assert res.reading.record in (REC, {0: 0})


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    rx = new_receiver()
    for prefix in (b"", b"\xd0\x83", b"\xd0\x83\x43\xa1\x01\x0a", b"\xd0\x83\x43\xa1\x01\x0a\xa2"):
        check(rx, prefix + data)


MUTATION = mutations(300, 16)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(MUTATION, min_size=1, max_size=5))
def test_fuzz_mutated_frames(base: bytes, muts: list[tuple[str, int, bytes]]) -> None:
    rx = new_receiver()
    rx.submit(seal(50))
    g = mutate(base, muts)
    res = rx.submit(g)
    assert res.reason != "internal-error"
    if res.accepted:  # a mutation may only be accepted if it left a genuine frame
        assert g in SEEDS and rx.store.count() == 2


@FUZZ_SLOW
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=200), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_fuzz_sequences_match_a_reference_window(steps: list[tuple[int, bool]]) -> None:
    """Random arrival orders, replays and tampering: the receiver accepts exactly what a
    reference model of the window (ReplayWindow.SIZE counters) accepts, and stores each piv at
    most once. Counters are steps of SIZE / 64 plus a small offset, so that both reordering
    inside the window and frames beyond it occur."""
    rx = new_receiver()
    seen: set[int] = set()
    highest = -1
    for k, tamper in steps:
        piv = k * (ReplayWindow.SIZE // 64) + k % 3
        f = seal(piv)
        if tamper:
            f = f[:-1] + bytes([f[-1] ^ 0x80])
        if piv > highest:
            expect = "bad-tag" if tamper else None
        elif highest - piv >= ReplayWindow.SIZE:
            expect = "duplicate" if piv in seen and not tamper else "too-old"
        elif piv in seen:
            expect = "replay"
        else:
            expect = "bad-tag" if tamper else None
        assert rx.submit(f).reason == expect
        if expect is None:
            seen.add(piv)
            highest = max(highest, piv)
    assert sorted(r.piv for r in rx.store.readings()) == sorted(seen)


@FUZZ_SLOW
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.binary(max_size=8) | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.integers(-5, 40), c, max_size=4),
        max_leaves=12,
    ).filter(lambda v: not isinstance(v, int) or -(2**64) <= v < 2**64)
)
def test_fuzz_authenticated_odd_records_are_stored_or_refused(value: Any) -> None:
    """A key holder sending odd (but authenticated) plaintext never breaks store or export."""
    from atsource.cmd_receive import export_row

    rx = new_receiver()
    try:
        body = cbor2.dumps({0: value, 7: value, 99: value}, canonical=True)
    except (OverflowError, ValueError):
        return
    aad = enc_structure(external_aad(KID, b"\x01"))
    ct = AESCCM(KEY, tag_length=8).encrypt(make_nonce(IV, b"\x01"), body, aad)
    f = cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x0a", {4: KID, 6: b"\x01"}, ct]))
    res = rx.submit(f)
    assert res.reason in (None, "bad-plaintext", "oversized")
    for r in rx.store.readings():
        json.dumps(export_row(r))


def _outcome(f: Any, *args: Any) -> Any:
    try:
        return f(*args)
    except fr.FrameRejected as e:
        return e.reason


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(MUTATION, min_size=0, max_size=5))
def test_fuzz_fast_envelope_path_agrees_with_the_strict_parser(
    base: bytes, muts: list[tuple[str, int, bytes]]
) -> None:
    """The receiver's fast path for the device's own layout (bytes) and the strict parser
    (taken for anything else, e.g. a bytearray) give the same kid, piv and ciphertext, or the
    same reason."""
    g = mutate(base, muts)
    assert _outcome(fr._header, g) == _outcome(fr._header, bytearray(g))


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=64),
        st.dictionaries(
            st.integers(-(2**65), 2**65) | st.booleans() | st.text(max_size=3),
            st.integers(-(2**65), 2**65)
            | st.binary(max_size=30)
            | st.text(max_size=30)
            | st.floats()
            | st.none()
            | st.booleans()
            | st.lists(st.integers(), max_size=2),
            max_size=12,
        ).map(lambda d: cbor2.dumps(d) if all(type(k) is not float for k in d) else b""),
    ),
    st.binary(max_size=8),
    st.lists(MUTATION, max_size=2),
)
def test_fuzz_fast_record_path_agrees_with_the_strict_reader(
    body: bytes, tail: bytes, muts: list[tuple[str, int, bytes]]
) -> None:
    """cbor2 with the checks around it never accepts a plaintext the strict reader refuses,
    and returns the same record for what they both accept (padding, junk after the map,
    non-shortest heads, big ints, floats, nested items, duplicate keys included)."""
    pt = mutate(body + tail, muts) if body else tail
    assert _outcome(fr.decode_record, pt) == _outcome(fr._strict_record, pt)


@pytest.mark.parametrize(
    "pt",
    [
        b"\xa1\xc2\x49\x01" + bytes(8) + b"\x00",  # key: a bignum tag (2^64) cbor2 re-encodes
        b"\xa1\x01\xc2\x49\x01" + bytes(8),  # value: the same
        b"\xa1\x01\xc1\x1a\x65\x00\x00\x00",  # value: a datetime tag
        b"\xa1\x01\xf9\x3c\x00",  # value: a half float
        b"\xa2\x01\x01\x01\x02",  # a duplicate key
        b"\xa1\x18\x01\x01",  # a non-shortest key head
        b"\xbf\x01\x01\xff",  # an indefinite-length map
    ],
)
def test_fast_record_path_refuses_what_the_strict_reader_refuses(pt: bytes) -> None:
    """Cases the property found or must keep finding (found: the bignum key)."""
    assert _outcome(fr._strict_record, pt) == "bad-plaintext"
    assert _outcome(fr.decode_record, pt) == "bad-plaintext"


def test_fast_paths_are_taken_for_device_frames() -> None:
    """The fast paths are really used (else the benchmark measures the slow ones)."""
    assert fr._split(seal(300)) is not None
    assert fr._flat_record(PT) == REC
    for n in (0, 1, 255, 256, 2**32, 2**40 - 1):
        p = n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")
        assert fr._aad(KID, p) == enc_structure(external_aad(KID, p))


def corpus(n: int, seed: int = 1) -> list[bytes]:
    """Frames that hit every rejection reason, then random mutations of genuine frames."""
    rng = random.Random(seed)
    out = [seal(p) for p in range(100, 110)]
    out.append(seal(100 + ReplayWindow.SIZE))  # so that pivs 50 and 100 are older than the window
    out += [
        bytes(2000),  # oversized
        b"\xd0\x83",  # not-cose
        seal(200)[:2] + b"\x43\xa1\x01\x0b" + seal(200)[6:],  # bad-protected
        seal(201).replace(b"\xa2\x04", b"\xa2\x05", 1),  # bad-header
        seal(202, kid=keys.make_kid(1, 1)),  # unknown-kid
        seal(203, kid=REVOKED),  # revoked-kid
        seal(101),  # replay: inside the window, already accepted
        seal(50),  # too-old: older than the window, never stored
        seal(204)[:-1] + b"\x00",  # bad-tag
        seal(205, b"\x01"),  # bad-plaintext
        seal(100),  # duplicate: older than the window, a resend of a stored frame
    ]
    aad = enc_structure(external_aad(KID, b"\x00\xd0"))
    ct = AESCCM(KEY, tag_length=8).encrypt(make_nonce(IV, b"\x00\xd0"), PT, aad)
    out.append(cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x0a", {4: KID, 6: b"\x00\xd0"}, ct])))
    genuine = [seal(p) for p in range(300, 400)]
    for _ in range(n):
        f = bytearray(rng.choice(genuine))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(f))
            f[i] = rng.randrange(256)
        out.append(bytes(f))
    return out


def test_stats_after_a_fuzz_run_show_every_reason(tmp_path: Path) -> None:
    """The acceptance check: a fuzz run through a capture file, then `receive --stats`."""
    cap = tmp_path / "fuzz.hex"
    with cap.open("w") as fh:
        write_capture(fh, corpus(min(N, 5000)), "receiver fuzz corpus")
    db = tmp_path / "fuzz.db"
    with SQLiteStore(db) as s:
        summary = FileSource(cap).run(Receiver(s, ENTRIES.get))
    assert summary.bad_lines == 0
    r = CliRunner().invoke(cli_main, ["receive", "--db", str(db), "--stats", "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.stdout)["stats"]
    assert st["rejected"].pop("internal-error") == 0
    # These two need a registry in trouble (tests/unit/test_registry_safety.py), not a frame.
    assert st["rejected"].pop("kid-reused") == st["rejected"].pop("key-unreadable") == 0
    assert all(n > 0 for n in st["rejected"].values()), st["rejected"]
    assert set(st["rejected"]) == set(RECEIVER_REASONS) - {
        "internal-error",
        "kid-reused",
        "key-unreadable",
    }
    assert st["accepted"] + st["rejected_total"] == summary.frames


@pytest.mark.parametrize("n", [0, 1])
def test_corpus_is_deterministic(n: int) -> None:
    assert corpus(5, n) == corpus(5, n)
