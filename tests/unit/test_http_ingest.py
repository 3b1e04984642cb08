"""`atsource receive --from http://HOST:PORT/PATH`: devices' HTTP POSTs into the real receiver
and a real SQLite store, answered only once stored (204) or rejected (202)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from pathlib import Path

import cbor2
import pytest
from atsource import keys
from atsource.errors import UserError
from atsource.frame import KeyEntry, enc_structure, external_aad, make_nonce
from atsource.receiver import HttpSource, Receiver, open_source
from atsource.store import SQLiteStore
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

KID = keys.make_kid(0x51, 1)
ENTRY = KeyEntry(*keys.derive(bytes(range(16)), KID))


def frame(piv: int) -> bytes:
    p = piv.to_bytes(max(1, (piv.bit_length() + 7) // 8), "big")
    rec = cbor2.dumps({0: 1780272000 + 900 * piv, 1: 900, 2: b"\x5a\x3c\x9e\x01", 7: 2, 6: piv})
    aad = enc_structure(external_aad(KID, p))
    ct = AESCCM(ENTRY.key, tag_length=8).encrypt(make_nonce(ENTRY.context_iv, p), rec, aad)
    return cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x0a", {4: KID, 6: p}, ct]))


def post(port: int, path: str, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_posts_are_stored_once_and_answered_after(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    rx = Receiver(store, lambda kid: ENTRY if kid == KID else None)
    src = open_source("http://127.0.0.1:0/up")
    assert isinstance(src, HttpSource)
    # Port 0 picks a free one: read it back from the server once it listens.
    result: list[object] = []
    t = threading.Thread(target=lambda: result.append(src.run(rx, count=3)), daemon=True)
    t.start()
    assert src.ready.wait(60)
    port = src._server.server_address[1]
    assert post(port, "/up", frame(1)) == 204
    assert post(port, "/up", frame(1)) == 202  # a resend: rejected, counted, forgettable
    assert post(port, "/elsewhere", frame(2)) == 404
    assert post(port, "/up", b"\xd0garbage") == 202
    assert post(port, "/up", frame(2)) == 204
    assert post(port, "/up", frame(3)) == 204
    t.join(timeout=60)
    summary = result[0]
    assert summary.accepted == 3 and summary.ended == "count"  # type: ignore[attr-defined]
    assert [r.piv for r in store.readings()] == [1, 2, 3]


def test_an_http_source_needs_an_address_to_listen_on() -> None:
    with pytest.raises(UserError, match="HOST:PORT"):
        open_source("http://127.0.0.1/up")
