"""Registry safety (issue 15): no silent new registry, busy and damaged files as one line,
backup and restore with the encryption intact, device numbers that never meet a store's old
ones, one bad row hurting only its device, key file hygiene. Real SQLite, real processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from atsource import keys as keymod
from atsource import registry as regmod
from atsource.cli import main
from atsource.errors import UserError
from atsource.receiver import Receiver
from atsource.registry import (
    KEY_ENV,
    KEY_FILE_ENV,
    NotARegistry,
    Registry,
    RegistryBusy,
    RegistryDamaged,
    board_hash,
)
from atsource.store import SQLiteStore
from click.testing import CliRunner, Result
from fakes import Counter
from sensor import cbor, sealer

REC = {0: 1780272000, 1: 900, 2: bytes(4), 7: 1, 3: 2153}


@pytest.fixture(autouse=True)
def _env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    db = tmp_path / "registry.db"
    monkeypatch.setenv("ATSOURCE_REGISTRY", str(db))
    monkeypatch.setenv("ATSOURCE_DB", str(tmp_path / "readings.db"))
    monkeypatch.setattr(regmod, "BUSY_TIMEOUT_S", 0.2)
    return db


def _device(reg: Registry, uid: bytes) -> bytes:
    _, kid = reg.begin_device(board_hash(uid), "pico-w", "plaza", None)
    reg.activate(kid, verified_piv=0)
    return kid


def _seal(reg: Registry, kid: bytes, piv: int) -> bytes:
    key, iv = keymod.derive(reg.master(kid), kid)
    return sealer.Sealer(kid, key, iv, Counter(piv)).seal(sealer.pad(cbor.dumps(REC)))


def _one_line(r: Result, *needles: str) -> str:
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit), r.exception
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atsource: error: "), r.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


# ---- empty and foreign files -------------------------------------------------------------------


def test_an_empty_file_is_refused_not_taken_as_a_new_registry(_env: Path) -> None:
    _env.touch()
    with pytest.raises(RegistryDamaged, match="empty file"):
        Registry.open(_env)
    _one_line(_cli("devices", "list"), str(_env), "empty file", "atsource registry restore")
    _one_line(_cli("keys", "revoke", "dev-000001"), "empty file")
    assert _env.stat().st_size == 0  # nothing written into it
    assert not _env.with_name("registry.db.key").exists()  # and no key made for it


def test_a_foreign_database_is_refused_and_left_alone(_env: Path, tmp_path: Path) -> None:
    store = tmp_path / "readings.db"
    SQLiteStore(store).close()
    before = {r[0] for r in sqlite3.connect(store).execute("SELECT name FROM sqlite_master")}
    with pytest.raises(NotARegistry, match="not an atsource registry"):
        Registry.open(store)
    after = {r[0] for r in sqlite3.connect(store).execute("SELECT name FROM sqlite_master")}
    assert after == before  # no registry tables were made inside the readings store
    _one_line(_cli("devices", "list", "--registry", str(store)), "not an atsource registry")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"PK\x03\x04 not a database at all" * 40)
    _one_line(_cli("devices", "list", "--registry", str(junk)), "not a SQLite database")


def test_read_commands_never_create_a_registry(_env: Path) -> None:
    _one_line(_cli("devices", "list"), "no registry at")
    _one_line(_cli("keys", "list"), "no registry at")
    assert not _env.exists() and not _env.with_name("registry.db.key").exists()


def test_a_registry_of_an_earlier_version_is_still_opened(_env: Path) -> None:
    with Registry.open(_env) as reg:
        kid = _device(reg, b"old")
    con = sqlite3.connect(_env)  # as the earlier version left it: no marks
    con.execute("PRAGMA application_id = 0")
    con.execute("DELETE FROM meta WHERE k IN ('format', 'registry_id', 'last_number')")
    con.commit()
    con.close()
    with Registry.open(_env) as reg:
        assert reg.key_entry(kid) is not None and reg.registry_id


# ---- busy and damaged --------------------------------------------------------------------------

_HOLD = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute(sys.argv[2])
print("held", flush=True)
sys.stdin.read()
"""


def _hold_lock(db: Path, how: str) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    return p


@pytest.mark.parametrize("how", ["BEGIN IMMEDIATE", "BEGIN EXCLUSIVE"])
def test_a_lock_held_by_another_process_is_one_line(_env: Path, how: str) -> None:
    with Registry.open(_env) as reg:
        _device(reg, b"a")
    holder = _hold_lock(_env, how)
    try:
        line = _one_line(_cli("keys", "revoke", "dev-000001"), "registry busy", str(_env))
        assert "OperationalError" not in line
        with pytest.raises(RegistryBusy), Registry.open(_env) as reg:
            reg.revoke(1)
    finally:
        holder.communicate("")
    with Registry.open(_env) as reg:  # the lock gone, the same command works
        assert reg.revoke(1) and reg.device(1).state == "retired"  # type: ignore[union-attr]


def _corrupt(db: Path, n_devices: int = 60) -> None:
    with Registry.open(db) as reg:
        for i in range(n_devices):
            _device(reg, b"board%d" % i)
    size = db.stat().st_size
    page = 4096
    assert size >= 4 * page
    with open(db, "r+b") as f:  # garbage over every page but the first (the schema)
        for off in range(page, size, page):
            f.seek(off)
            f.write(os.urandom(page))


def test_a_corrupted_page_is_one_line_naming_the_file_and_the_restore(
    _env: Path, tmp_path: Path
) -> None:
    _corrupt(_env)
    for args in (["devices", "list"], ["keys", "revoke", "dev-000001"]):
        _one_line(_cli(*args), str(_env), "damaged", "atsource registry restore")
    cap = tmp_path / "up.hex"
    cap.write_text("d0\n")
    r = _cli("receive", "--from", str(cap))
    _one_line(r, str(_env), "atsource registry restore")


# ---- backup and restore ------------------------------------------------------------------------


def test_backup_and_restore_keep_the_secrets_encrypted(_env: Path, tmp_path: Path) -> None:
    with Registry.open(_env) as reg:
        kids = [_device(reg, b"b%d" % i) for i in range(3)]
        masters = [reg.master(k) for k in kids]
        rid = reg.registry_id
    backup = tmp_path / "bk" / "registry-backup.db"
    r = _cli("registry", "backup", str(backup))
    assert r.exit_code == 0 and "3 device(s)" in r.output, r.output
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    raw = backup.read_bytes()
    assert not any(m in raw or m.hex().encode() in raw for m in masters)
    assert _env.with_name("registry.db.key").read_text().strip().encode() not in raw
    _one_line(_cli("registry", "backup", str(backup)), "exists")

    # A working registry is not replaced by accident.
    _one_line(_cli("registry", "restore", str(backup)), "working registry", "--force")

    _env.write_bytes(b"")  # the registry is lost
    r = _cli("registry", "restore", str(backup))
    assert r.exit_code == 0, r.output
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("registry.db.damaged-")]
    assert len(kept) == 1
    with Registry.open(_env) as reg:
        assert reg.registry_id == rid
        assert [reg.master(k) for k in kids] == masters
        assert all(reg.key_entry(k) is not None for k in kids)

    # Under another registry key the backup is refused (nothing replaced).
    other = tmp_path / "other.key"
    other.write_text(os.urandom(32).hex())
    other.chmod(0o600)
    r = CliRunner().invoke(
        main, ["registry", "restore", str(backup), "--force"], env={KEY_FILE_ENV: str(other)}
    )
    _one_line(r, "wrong registry key")


# ---- device numbers never collide with a store's -------------------------------------------------


def test_numbers_skip_the_store_and_never_go_back(_env: Path, tmp_path: Path) -> None:
    store_path = tmp_path / "readings.db"
    with Registry.open(_env) as reg:
        kid = _device(reg, b"first")
        with SQLiteStore(store_path) as store:
            assert Receiver(store, reg.key_entry).submit(_seal(reg, kid, 5)).accepted
            seen = store.device_numbers()
    assert seen == {1}
    _env.unlink()
    _env.with_name("registry.db.key").unlink()
    with Registry.open(_env) as reg:  # a new, empty registry beside the old store
        from atsource.provision import seen_numbers

        row, _ = reg.begin_device(
            board_hash(b"new"), "pico-w", "s", None, seen=seen_numbers(store_path)
        )
        assert row.number == 2
        reg.discard_pending(row.number)  # an interrupted first provisioning
        row, _ = reg.begin_device(board_hash(b"new"), "pico-w", "s", None)
        assert row.number == 3  # a discarded number is not issued again


def test_the_receiver_refuses_a_kid_issued_again(
    _env: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_path = tmp_path / "readings.db"
    with Registry.open(_env) as reg:
        kid = _device(reg, b"first")
        with SQLiteStore(store_path) as store:
            for n in range(40):
                assert Receiver(store, reg.key_entry).submit(_seal(reg, kid, 100 + n)).accepted
    _env.unlink()
    _env.with_name("registry.db.key").unlink()
    with Registry.open(_env) as reg:  # a new registry issues kid 0000000101 again
        kid2 = _device(reg, b"second")
        assert kid2 == kid
        with SQLiteStore(store_path) as store, caplog.at_level(logging.ERROR):
            rx = Receiver(store, reg.key_entry)
            reasons = [rx.submit(_seal(reg, kid2, n)).reason for n in range(5)]
    assert reasons == ["kid-reused"] * 5  # not "too-old": the reason tells the truth
    assert sum("issued the device number again" in m for m in caplog.messages) == 1


# ---- one bad row --------------------------------------------------------------------------------


def test_one_undecryptable_row_affects_only_its_device(_env: Path, tmp_path: Path) -> None:
    with Registry.open(_env) as reg:
        good = _device(reg, b"good")
        bad = _device(reg, b"bad")
        frames = [_seal(reg, k, n) for n in range(3) for k in (good, bad)]
    con = sqlite3.connect(_env)
    blob = con.execute("SELECT master FROM keys WHERE kid = ?", (good,)).fetchone()[0]
    con.execute("UPDATE keys SET master = ? WHERE kid = ?", (blob, bad))  # a damaged row
    con.commit()
    con.close()
    cap = tmp_path / "up.hex"
    cap.write_text("".join(f.hex() + "\n" for f in frames))
    r = _cli("receive", "--from", str(cap), "--db", str(tmp_path / "r.db"), "--json")
    assert r.exit_code == 0, r.output
    run: dict[str, Any] = __import__("json").loads(r.stdout)["run"]
    assert run["accepted"] == 3 and run["rejected"] == {"key-unreadable": 3}


# ---- key file hygiene --------------------------------------------------------------------------


def test_a_key_file_readable_by_others_is_refused(_env: Path) -> None:
    with Registry.open(_env) as reg:
        _device(reg, b"a")
    kf = _env.with_name("registry.db.key")
    kf.chmod(0o644)
    with pytest.raises(UserError, match="can be read by others"):
        Registry.open(_env)
    _one_line(_cli("devices", "list"), str(kf), "chmod 600")
    kf.chmod(0o600)
    assert _cli("devices", "list").exit_code == 0


def test_a_mistyped_key_file_gets_no_fresh_key(_env: Path, tmp_path: Path) -> None:
    with Registry.open(_env) as reg:
        _device(reg, b"a")
    typo = tmp_path / "registry.kye"
    r = CliRunner().invoke(main, ["devices", "list"], env={KEY_FILE_ENV: str(typo)})
    _one_line(r, str(typo), "does not exist")
    assert not typo.exists()
