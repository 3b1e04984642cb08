"""The registry on real SQLite: modes, encryption at rest, key states, allocation."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import pytest
from atsource import keys as keymod
from atsource.errors import UserError
from atsource.registry import KEY_ENV, KEY_FILE_ENV, Registry, board_hash


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _active_device(reg: Registry, uid: bytes = b"board-1", site: str = "plaza") -> bytes:
    _, kid = reg.begin_device(board_hash(uid), "pico-w", site, None)
    reg.activate(kid, verified_piv=0)
    return kid


def test_files_are_private_and_secrets_encrypted(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "registry.db"
    with Registry.open(db) as reg:
        kid = _active_device(reg)
        master = reg.master(kid)
        seed = reg.seed(kid)
    assert _mode(db) == 0o600
    assert _mode(db.with_name("registry.db.key")) == 0o600
    assert _mode(db.parent) == 0o700
    raw = db.read_bytes()
    assert master not in raw and seed not in raw
    assert master.hex().encode() not in raw
    assert b"board-1" not in raw  # the raw board id is never stored, only its hash
    # The same key file opens it again and gives the same secrets back.
    with Registry.open(db) as reg:
        assert reg.master(kid) == master and reg.seed(kid) == seed


def test_key_from_environment_hex_or_base64_and_wrong_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = os.urandom(32)
    db = tmp_path / "r.db"
    monkeypatch.setenv(KEY_ENV, key.hex())
    with Registry.open(db) as reg:
        kid = _active_device(reg)
    assert not db.with_name("r.db.key").exists()  # no key file when the env gives the key
    monkeypatch.setenv(KEY_ENV, base64.b64encode(key).decode())
    with Registry.open(db) as reg:
        assert reg.key_entry(kid) is not None
    monkeypatch.setenv(KEY_ENV, os.urandom(32).hex())
    with pytest.raises(UserError, match="wrong registry key"):
        Registry.open(db)
    monkeypatch.setenv(KEY_ENV, "not a key")
    with pytest.raises(UserError, match="32 bytes"):
        Registry.open(db)


def test_key_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kf = tmp_path / "keys" / "registry.key"
    monkeypatch.setenv(KEY_FILE_ENV, str(kf))
    with Registry.open(tmp_path / "r.db") as reg:
        _active_device(reg)
    assert kf.exists() and _mode(kf) == 0o600
    assert len(bytes.fromhex(kf.read_text().strip())) == 32


def test_key_entry_states(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "r.db") as reg:
        row, kid1 = reg.begin_device(board_hash(b"b"), "pico-w", "s", None)
        assert row.state == "pending" and row.number == 1 and kid1 == keymod.make_kid(1, 1)
        pending = reg.key_entry(kid1)  # pending: already valid (an interrupted transition
        assert pending is not None and not pending.revoked  # must not lose frames)
        reg.activate(kid1, verified_piv=3)
        e1 = reg.key_entry(kid1)
        assert e1 is not None and not e1.revoked
        assert (e1.key, e1.context_iv) == keymod.derive(reg.master(kid1), kid1)
        assert "key" not in repr(e1).lower().replace("keyentry", "")
        assert reg.key_entry(keymod.make_kid(1, 9)) is None

        # Rotation with a grace period: both generations valid.
        kid2 = reg.begin_generation(1)
        assert kid2 == keymod.make_kid(1, 2)
        assert reg.begin_generation(1) == kid2  # an interrupted attempt is reused
        reg.activate(kid2, old="retire", grace_s=3600)
        assert not reg.key_entry(kid1).revoked  # type: ignore[union-attr]
        assert not reg.key_entry(kid2).revoked  # type: ignore[union-attr]
        k1 = next(k for k in reg.keys(1) if k.kid == kid1)
        assert k1.state == "retired" and k1.effective_state() == "retired"
        assert k1.effective_state(now=time.time() + 3601) == "revoked"

        # Rotation without grace: the old one counts as revoked at once.
        kid3 = reg.begin_generation(1)
        reg.activate(kid3, old="retire", grace_s=0)
        assert reg.key_entry(kid2).revoked  # type: ignore[union-attr]
        assert not reg.key_entry(kid3).revoked  # type: ignore[union-attr]

        # Revocation of one generation, then of the device.
        assert reg.revoke(1, generation=1) == [kid1]
        assert reg.key_entry(kid1).revoked  # type: ignore[union-attr]
        revoked = reg.revoke(1)
        assert kid3 in revoked
        assert reg.key_entry(kid3).revoked  # type: ignore[union-attr]
        assert reg.device(1).state == "retired"  # type: ignore[union-attr]
        with pytest.raises(UserError):
            reg.revoke(42)


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Registry.open(db) as reg:
        k1 = _active_device(reg, b"a")
        k2 = _active_device(reg, b"b")
    con = sqlite3.connect(db)
    blob = con.execute("SELECT master FROM keys WHERE kid = ?", (k1,)).fetchone()[0]
    con.execute("UPDATE keys SET master = ? WHERE kid = ?", (blob, k2))
    con.commit()
    con.close()
    with Registry.open(db) as reg:
        assert reg.key_entry(k1) is not None
        with pytest.raises(UserError, match="does not decrypt"):
            reg.key_entry(k2)


def test_parallel_allocation_gives_distinct_numbers(tmp_path: Path) -> None:
    reg = Registry.open(tmp_path / "r.db")
    other = Registry.open(tmp_path / "r.db")  # a second connection, as a second process has
    numbers: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        r = reg if i % 2 else other
        row, _ = r.begin_device(board_hash(b"board%d" % i), "pico-w", "s", None)
        with lock:
            numbers.append(row.number)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(numbers) == list(range(1, 9))
    # The same board cannot get a second row.
    with pytest.raises(UserError, match="already in the registry"):
        reg.begin_device(board_hash(b"board0"), "pico-w", "s", None)
    reg.close()
    other.close()


def test_discard_pending_forgets_an_unfinished_first_provisioning(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "r.db") as reg:
        row, _ = reg.begin_device(board_hash(b"x"), "esp32-devkitc", "s", "00112233")
        reg.discard_pending(row.number)
        assert reg.devices() == [] and reg.keys() == []
