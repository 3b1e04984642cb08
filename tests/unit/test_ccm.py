"""Firmware AES-CCM-16-64-128 (ECB-only construction) against the vectors and cryptography."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cbor2
import cryptolib
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given
from hypothesis import strategies as st
from sensor import ccm

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "cose-aes-ccm.json").read_text())
h = bytes.fromhex


def _ct_from_message(message: bytes) -> bytes:
    tagged = cbor2.loads(message)
    assert tagged.tag == 16
    return bytes(tagged.value[2])


def test_vector_file_matches_shared_copy() -> None:
    shared = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "cose-aes-ccm.json"
    if not shared.exists():
        pytest.skip("no ../shared/vectors beside this checkout (a CI clone): the copy is used")
    assert json.loads(shared.read_text()) == VECTORS


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vectors(name: str) -> None:
    v: dict[str, Any] = VECTORS[name]
    if "alg" not in v:
        pytest.skip("not a cipher vector: the HKDF one is checked in test_frame (keys)")
    if v["alg"] != 10:
        pytest.skip(f"alg {v['alg']} is not AES-CCM-16-64-128: see test_alg30_vector_is_not_ours")
    key, aad, pt = h(v["key"]), h(v["aad"]), h(v["plaintext"])
    nonce = h(v["iv"] if "iv" in v else v["nonce"])
    expected = h(v["ciphertext_and_tag"]) if "ciphertext_and_tag" in v else None
    if expected is None:
        expected = _ct_from_message(h(v["message"]))
    assert ccm.encrypt(key, nonce, aad, pt) == expected
    assert ccm.decrypt(key, nonce, aad, expected) == pt


def test_alg30_vector_is_not_ours() -> None:
    # AES-CCM-16-128-128 (16-byte tag): our M = 8 output is a prefix of the ciphertext only.
    v = VECTORS["cose-wg aes-ccm-enc-02"]
    out = ccm.encrypt(h(v["key"]), h(v["iv"]), h(v["aad"]), h(v["plaintext"]))
    full = h(v["ciphertext_and_tag"])
    assert out[:-8] == full[:-16]
    assert out[-8:] != full[-16:-8]  # the tag depends on M (flags in B0)


def test_ctr_mode_is_not_available() -> None:
    with pytest.raises(ValueError):
        cryptolib.aes(bytes(16), 6, bytes(16))


def test_uses_one_ecb_object_and_encrypt_only(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    real = cryptolib.aes

    class Spy:
        def __init__(self, key: bytes, mode: int, *iv: bytes) -> None:
            made.append(mode)
            self._aes = real(key, mode, *iv)

        def encrypt(self, *a: Any) -> Any:
            return self._aes.encrypt(*a)

        def decrypt(self, *a: Any) -> Any:  # pragma: no cover - must not be called
            raise AssertionError("CCM needs only the forward cipher")

    monkeypatch.setattr(ccm.cryptolib, "aes", Spy)
    ct = ccm.encrypt(bytes(16), bytes(13), b"a", b"p" * 40)
    assert ccm.decrypt(bytes(16), bytes(13), b"a", ct) == b"p" * 40
    assert made == [1, 1]


def _reference(key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
    return AESCCM(key, tag_length=8).encrypt(nonce, pt, aad)


@given(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=13, max_size=13),
    st.binary(max_size=300),
    st.binary(max_size=300),
)
def test_matches_cryptography(key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> None:
    ct = ccm.encrypt(key, nonce, aad, pt)
    assert ct == _reference(key, nonce, aad, pt)
    assert ccm.decrypt(key, nonce, aad, ct) == pt


@pytest.mark.parametrize("alen", [0, 1, 14, 15, 16, 17, 0xFEFF, 0xFF00, 0xFF01])
@pytest.mark.parametrize("plen", [0, 1, 16, 17])
def test_boundaries_including_empty_plaintext_and_long_aad(alen: int, plen: int) -> None:
    key, nonce = bytes(range(16)), bytes(range(13))
    aad = bytes(i & 0xFF for i in range(alen))
    pt = b"\xa5" * plen
    ct = ccm.encrypt(key, nonce, aad, pt)
    assert ct == _reference(key, nonce, aad, pt)
    assert ccm.decrypt(key, nonce, aad, ct) == pt


def test_longest_plaintext() -> None:
    key, nonce = bytes(16), bytes(13)
    pt = bytes(0xFFFF)
    assert ccm.encrypt(key, nonce, b"", pt) == _reference(key, nonce, b"", pt)
    with pytest.raises(ValueError):
        ccm.encrypt(key, nonce, b"", pt + b"\x00")


@given(
    st.binary(min_size=9, max_size=60),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=7),
)
def test_any_bit_flip_fails(pt: bytes, where: int, bit: int) -> None:
    key, nonce, aad = bytes(range(16)), bytes(13), b"aad"
    ct = bytearray(ccm.encrypt(key, nonce, aad, pt))
    ct[where % len(ct)] ^= 1 << bit
    assert ccm.decrypt(key, nonce, aad, bytes(ct)) is None


def test_wrong_aad_nonce_key_or_short_input() -> None:
    key, nonce = bytes(range(16)), bytes(13)
    ct = ccm.encrypt(key, nonce, b"x", b"hello")
    assert ccm.decrypt(key, nonce, b"y", ct) is None
    assert ccm.decrypt(key, b"\x01" + nonce[1:], b"x", ct) is None
    assert ccm.decrypt(bytes(16), nonce, b"x", ct) is None
    assert ccm.decrypt(key, nonce, b"x", ct[:7]) is None
    assert ccm.decrypt(key, nonce, b"", ccm.encrypt(key, nonce, b"", b"")) == b""


def test_parameter_checks() -> None:
    with pytest.raises(ValueError):
        ccm.encrypt(bytes(15), bytes(13), b"", b"")
    with pytest.raises(ValueError):
        ccm.encrypt(bytes(16), bytes(12), b"", b"")
    with pytest.raises(ValueError):
        ccm.encrypt_into(bytes(16), bytes(13), b"", b"abc", bytearray(10))


def test_encrypt_into_a_slice_of_a_larger_buffer() -> None:
    key, nonce = bytes(range(16)), bytes(range(13))
    frame = bytearray(b"HDR" + bytes(5 + 8))
    ccm.encrypt_into(key, nonce, b"", b"12345", memoryview(frame)[3:])
    assert frame[:3] == b"HDR"
    assert bytes(frame[3:]) == _reference(key, nonce, b"", b"12345")
