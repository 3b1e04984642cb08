"""The device registry: which boards exist, their device numbers, sites and key generations.

SQLite, one file, mode 0600 (its directory 0700). Default path: ``$ATSOURCE_REGISTRY``, else
``~/.local/share/atsource/registry.db`` (``$XDG_DATA_HOME`` honoured); ``--registry`` overrides.

Secrets (each key generation's master secret and RNG seed) are encrypted at rest
with AES-256-GCM under the registry key; the associated data names the row and column, so a
ciphertext moved to another row does not decrypt. The registry key comes from
``$ATSOURCE_REGISTRY_KEY`` (32 bytes as 64 hex digits or base64), else from the key file
``$ATSOURCE_REGISTRY_KEY_FILE``, else ``<db>.key`` next to the database, created 0600 with a fresh
random key on first use. A check value in the database makes a wrong key fail with one clear
line instead of garbage. Boards are known by the SHA-256 of ``machine.unique_id()``, never by the
raw id. Nothing here prints or logs a secret; reprs hide them.

Key generations (``keys`` table): ``pending`` (being provisioned: unknown to the receiver),
``active`` (the device's current key), ``retired`` (rotated out: valid until ``valid_until``,
then it counts as revoked), ``revoked`` (refused at once).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import keys as keymod
from . import paths
from .errors import UserError
from .frame import KeyEntry

KEY_ENV = "ATSOURCE_REGISTRY_KEY"
KEY_FILE_ENV = "ATSOURCE_REGISTRY_KEY_FILE"
PATH_ENV = paths.REGISTRY_ENV
SEED_LEN = 32
_CHECK = b"atsource registry key check v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    number      INTEGER PRIMARY KEY,
    board_hash  TEXT NOT NULL UNIQUE,
    board       TEXT NOT NULL,
    site        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired')),
    policy_hash TEXT,
    created     REAL NOT NULL,
    provisioned REAL,
    verified    REAL,
    verified_piv INTEGER
);
CREATE TABLE IF NOT EXISTS keys (
    kid         BLOB PRIMARY KEY,
    device      INTEGER NOT NULL REFERENCES devices(number),
    generation  INTEGER NOT NULL,
    master      BLOB NOT NULL,
    seed        BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retired', 'revoked')),
    created     REAL NOT NULL,
    valid_until REAL,
    revoked_at  REAL,
    UNIQUE (device, generation)
);
"""


def default_path() -> Path:
    env = os.environ.get(PATH_ENV)
    if env:
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "atsource" / "registry.db"


def board_hash(unique_id: bytes) -> str:
    """How the registry knows a board: SHA-256 of its unique id (the raw id is never stored)."""
    return hashlib.sha256(b"atsource board\0" + unique_id).hexdigest()


def _parse_key(text: str, where: str) -> bytes:
    t = text.strip()
    key: bytes | None = None
    if len(t) == 64:
        with contextlib.suppress(ValueError):
            key = bytes.fromhex(t)
    if key is None:
        with contextlib.suppress(binascii.Error, ValueError):
            key = base64.b64decode(t, validate=True)
    if key is None or len(key) != 32:
        raise UserError(f"{where}: the registry key must be 32 bytes, as 64 hex digits or base64")
    return key


@dataclass(frozen=True)
class DeviceRow:
    number: int
    board_hash: str
    board: str
    site: str
    state: str
    policy_hash: str | None
    created: float
    provisioned: float | None
    verified: float | None
    verified_piv: int | None
    generation: int | None  # the active (or pending) key generation

    @property
    def name(self) -> str:
        return device_name(self.number)

    @property
    def board_ref(self) -> str:
        """A short, non-identifying reference to the board (prefix of the id hash)."""
        return self.board_hash[:12]


@dataclass(frozen=True)
class KeyRow:
    kid: bytes
    device: int
    generation: int
    state: str
    created: float
    valid_until: float | None
    revoked_at: float | None

    def effective_state(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.state == "retired" and self.valid_until is not None and now >= self.valid_until:
            return "revoked"
        return self.state


def device_name(number: int) -> str:
    return f"dev-{number:06d}"


class Registry:
    """Open with ``Registry.open(path)``; safe to share between threads."""

    def __init__(self, path: Path, conn: sqlite3.Connection, key: bytes) -> None:
        self.path = path
        self._db = conn
        self._aead = AESGCM(key)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path | None = None) -> Registry:
        path = Path(path) if path is not None else default_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Create the file 0600 before SQLite does, so it is never readable by others.
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        try:
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            raise UserError(f"cannot open the registry {path}: {e}") from None
        key = cls._load_key(path)
        reg = cls(path, conn, key)
        reg._check_key()
        return reg

    @staticmethod
    def key_file_for(path: Path) -> Path:
        env = os.environ.get(KEY_FILE_ENV)
        return Path(env).expanduser() if env else path.with_name(path.name + ".key")

    @classmethod
    def _load_key(cls, path: Path) -> bytes:
        env = os.environ.get(KEY_ENV)
        if env:
            return _parse_key(env, KEY_ENV)
        kf = cls.key_file_for(path)
        if kf.exists():
            return _parse_key(kf.read_text(), str(kf))
        # First use: a fresh random key, written 0600 (O_EXCL: two processes never both win).
        key = os.urandom(32)
        kf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(kf, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return _parse_key(kf.read_text(), str(kf))
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return key

    def _check_key(self) -> None:
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k = 'key_check'").fetchone()
            if row is None:
                has_secrets = self._db.execute("SELECT count(*) FROM keys").fetchone()[0]
                if has_secrets:
                    raise UserError(f"registry {self.path}: key check value missing")
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('key_check', ?)",
                    (self._seal(_CHECK, "meta/key_check"),),
                )
                return
            try:
                ok = self._unseal(bytes(row[0]), "meta/key_check") == _CHECK
            except InvalidTag:
                ok = False
            if not ok:
                raise UserError(
                    f"wrong registry key for {self.path} (check ${KEY_ENV} or the key file "
                    f"{self.key_file_for(self.path)})"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- encryption --------------------------------------------------------------------------
    def _seal(self, secret: bytes, aad: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, secret, aad.encode())

    def _unseal(self, blob: bytes, aad: str) -> bytes:
        return self._aead.decrypt(blob[:12], blob[12:], aad.encode())

    def _secret(self, blob: bytes, aad: str) -> bytes:
        try:
            return self._unseal(blob, aad)
        except InvalidTag:
            raise UserError(f"registry {self.path}: a secret does not decrypt ({aad})") from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ---- the receiver's API ------------------------------------------------------------------
    def key_entry(self, kid: bytes) -> KeyEntry | None:
        """Key and context IV for a kid, or None when unknown (or still pending). A retired
        generation past its grace period, and a revoked one, come back with revoked=True."""
        with self._lock:
            row = self._db.execute(
                "SELECT state, master, valid_until FROM keys WHERE kid = ?", (bytes(kid),)
            ).fetchone()
        if row is None or row[0] == "pending":
            return None
        state, blob, valid_until = row
        master = self._secret(bytes(blob), _kid_aad(kid))
        key, iv = keymod.derive(master, bytes(kid))
        revoked = state == "revoked" or (
            state == "retired" and valid_until is not None and time.time() >= valid_until
        )
        return KeyEntry(key=key, context_iv=iv, revoked=revoked)

    # ---- devices -----------------------------------------------------------------------------
    def _device_row(self, r: tuple[object, ...]) -> DeviceRow:
        return DeviceRow(*r)  # type: ignore[arg-type]

    _DEV_COLS = (
        "d.number, d.board_hash, d.board, d.site, d.state, d.policy_hash, d.created, "
        "d.provisioned, d.verified, d.verified_piv, "
        "(SELECT max(generation) FROM keys k WHERE k.device = d.number "
        " AND k.state IN ('active', 'pending'))"
    )

    def devices(self) -> list[DeviceRow]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {self._DEV_COLS} FROM devices d ORDER BY d.number"
            ).fetchall()
        return [self._device_row(r) for r in rows]

    def device(self, number: int) -> DeviceRow | None:
        with self._lock:
            r = self._db.execute(
                f"SELECT {self._DEV_COLS} FROM devices d WHERE d.number = ?", (number,)
            ).fetchone()
        return None if r is None else self._device_row(r)

    def device_by_board(self, bhash: str) -> DeviceRow | None:
        with self._lock:
            r = self._db.execute(
                f"SELECT {self._DEV_COLS} FROM devices d WHERE d.board_hash = ?", (bhash,)
            ).fetchone()
        return None if r is None else self._device_row(r)

    def seed(self, kid: bytes) -> bytes:
        """The RNG seed provisioned with one key generation (never print it)."""
        with self._lock:
            r = self._db.execute("SELECT seed FROM keys WHERE kid = ?", (bytes(kid),)).fetchone()
        if r is None:
            raise UserError(f"unknown kid {bytes(kid).hex()}")
        return self._secret(bytes(r[0]), _kid_aad(kid, "seed"))

    def master(self, kid: bytes) -> bytes:
        """The master secret of one key generation (for provisioning; never print it)."""
        with self._lock:
            r = self._db.execute("SELECT master FROM keys WHERE kid = ?", (bytes(kid),)).fetchone()
        if r is None:
            raise UserError(f"unknown kid {bytes(kid).hex()}")
        return self._secret(bytes(r[0]), _kid_aad(kid))

    def begin_device(
        self, bhash: str, board: str, site: str, policy_hash: str | None
    ) -> tuple[DeviceRow, bytes]:
        """Allocate the next device number and a pending first key generation (new master
        and seed drawn here), in one transaction. Returns the row and the pending kid."""
        now = time.time()
        with self._tx() as db:
            number = db.execute("SELECT coalesce(max(number), 0) + 1 FROM devices").fetchone()[0]
            if db.execute("SELECT 1 FROM devices WHERE board_hash = ?", (bhash,)).fetchone():
                raise UserError("this board is already in the registry")
            db.execute(
                "INSERT INTO devices (number, board_hash, board, site, state, policy_hash,"
                " created) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                (number, bhash, board, site, policy_hash, now),
            )
            kid = self._insert_key(db, number, 1, now)
        row = self.device(number)
        assert row is not None
        return row, kid

    def _insert_key(
        self, db: sqlite3.Connection, number: int, generation: int, now: float
    ) -> bytes:
        kid = keymod.make_kid(number, generation)
        # Master secret and RNG seed are drawn here, on the host, and sealed at once.
        db.execute(
            "INSERT INTO keys (kid, device, generation, master, seed, state, created)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?)",
            (
                kid,
                number,
                generation,
                self._seal(keymod.new_master(), _kid_aad(kid)),
                self._seal(os.urandom(SEED_LEN), _kid_aad(kid, "seed")),
                now,
            ),
        )
        return kid

    def begin_generation(
        self, number: int, site: str | None = None, policy_hash: str | None = None
    ) -> bytes:
        """A pending next key generation for a device (rotation or re-provisioning). An
        earlier pending generation (an interrupted attempt) is reused, not stacked."""
        now = time.time()
        with self._tx() as db:
            pending = db.execute(
                "SELECT kid FROM keys WHERE device = ? AND state = 'pending'", (number,)
            ).fetchone()
            if pending is None:
                top = db.execute(
                    "SELECT coalesce(max(generation), 0) FROM keys WHERE device = ?", (number,)
                ).fetchone()[0]
                if top >= 255:
                    raise UserError(
                        f"{device_name(number)} has used all 255 key generations: retire it "
                        "and provision the board as a new device"
                    )
                kid = self._insert_key(db, number, top + 1, now)
            else:
                kid = bytes(pending[0])
            if site is not None:
                db.execute("UPDATE devices SET site = ? WHERE number = ?", (site, number))
            if policy_hash is not None:
                db.execute(
                    "UPDATE devices SET policy_hash = ? WHERE number = ?", (policy_hash, number)
                )
        return kid

    def pending_kid(self, number: int) -> bytes | None:
        with self._lock:
            r = self._db.execute(
                "SELECT kid FROM keys WHERE device = ? AND state = 'pending'", (number,)
            ).fetchone()
        return None if r is None else bytes(r[0])

    def active_kid(self, number: int) -> bytes | None:
        with self._lock:
            r = self._db.execute(
                "SELECT kid FROM keys WHERE device = ? AND state = 'active'", (number,)
            ).fetchone()
        return None if r is None else bytes(r[0])

    def activate(
        self,
        kid: bytes,
        *,
        old: str = "retire",
        grace_s: float = 0.0,
        verified_piv: int | None = None,
    ) -> None:
        """Make a pending generation the device's active key; the previous active one is
        retired with a grace period (``old="retire"``) or revoked at once (``"revoke"``)."""
        number, _ = keymod.split_kid(kid)
        now = time.time()
        with self._tx() as db:
            r = db.execute("SELECT state FROM keys WHERE kid = ?", (kid,)).fetchone()
            if r is None or r[0] not in ("pending", "active"):
                raise UserError(f"kid {kid.hex()} is not pending")
            if old == "revoke":
                db.execute(
                    "UPDATE keys SET state = 'revoked', revoked_at = ? WHERE device = ? "
                    "AND kid != ? AND state IN ('active', 'retired')",
                    (now, number, kid),
                )
            else:
                db.execute(
                    "UPDATE keys SET state = 'retired', valid_until = ? WHERE device = ? "
                    "AND kid != ? AND state = 'active'",
                    (now + grace_s, number, kid),
                )
            db.execute("UPDATE keys SET state = 'active' WHERE kid = ?", (kid,))
            db.execute(
                "UPDATE devices SET state = 'active', provisioned = ?, verified = ?, "
                "verified_piv = ? WHERE number = ?",
                (now, now if verified_piv is not None else None, verified_piv, number),
            )

    def discard_pending(self, number: int) -> None:
        """Forget an interrupted attempt: its pending key, and the device if nothing else."""
        with self._tx() as db:
            db.execute("DELETE FROM keys WHERE device = ? AND state = 'pending'", (number,))
            left = db.execute("SELECT count(*) FROM keys WHERE device = ?", (number,)).fetchone()
            if left[0] == 0:
                db.execute("DELETE FROM devices WHERE number = ?", (number,))

    # ---- keys --------------------------------------------------------------------------------
    def keys(self, number: int | None = None) -> list[KeyRow]:
        q = "SELECT kid, device, generation, state, created, valid_until, revoked_at FROM keys"
        args: tuple[object, ...] = ()
        if number is not None:
            q += " WHERE device = ?"
            args = (number,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY device, generation", args).fetchall()
        return [KeyRow(bytes(r[0]), *r[1:]) for r in rows]

    def revoke(self, number: int, generation: int | None = None) -> list[bytes]:
        """Revoke one generation, or every generation of a device (then the device is
        retired): the receiver refuses its frames from now on. Returns the kids revoked."""
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM devices WHERE number = ?", (number,)).fetchone() is None:
                raise UserError(f"no device {device_name(number)} in the registry")
            q = "SELECT kid FROM keys WHERE device = ? AND state != 'revoked'"
            args: tuple[object, ...] = (number,)
            if generation is not None:
                q += " AND generation = ?"
                args = (number, generation)
            kids = [bytes(r[0]) for r in db.execute(q, args).fetchall()]
            if generation is not None and not kids:
                raise UserError(
                    f"{device_name(number)} has no unrevoked key generation {generation}"
                )
            for kid in kids:
                db.execute(
                    "UPDATE keys SET state = 'revoked', revoked_at = ? WHERE kid = ?", (now, kid)
                )
            if generation is None:
                db.execute("UPDATE devices SET state = 'retired' WHERE number = ?", (number,))
        return kids


def _kid_aad(kid: bytes, column: str = "master") -> str:
    return f"keys/{bytes(kid).hex()}/{column}"
