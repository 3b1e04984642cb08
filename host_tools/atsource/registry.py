"""The device registry: which boards exist, their device numbers, sites and key generations.

SQLite, one file, mode 0600 (its directory 0700). Default path: ``$ATSOURCE_REGISTRY``, else
``~/.local/share/atsource/registry.db`` (``$XDG_DATA_HOME`` honoured); ``--registry`` overrides.

Secrets (each key generation's master secret and RNG seed) are encrypted at rest
with AES-256-GCM under the registry key; the associated data names the row and column, so a
ciphertext moved to another row does not decrypt. The registry key comes from
``$ATSOURCE_REGISTRY_KEY`` (32 bytes as 64 hex digits or base64), else from the key file
``$ATSOURCE_REGISTRY_KEY_FILE``, else ``<db>.key`` next to the database, created 0600 with a fresh
random key together with a new registry, and never on opening an existing one; a key file that
others may read is refused. A check value in the database makes a wrong key fail with one clear
line instead of garbage. Boards are known by the SHA-256 of ``machine.unique_id()``, never by the
raw id. Nothing here prints or logs a secret; reprs hide them.

Safety (docs/host-tools.md, "The registry"): a file is opened only if it is an atsource registry
(application id, format row, ``PRAGMA quick_check``); an empty, foreign or damaged file, a lock
held elsewhere ("registry busy"), a row that does not decrypt are each one line naming the file
(and the restore command), never a traceback. ``backup``/``restore`` copy it with the secrets
still encrypted. Device numbers only go up (a high-water mark, and above any number a readings
store has seen).

Key generations (``keys`` table): ``pending`` (being provisioned: the receiver already accepts
its frames, so an interrupted transition loses none; docs/uplink.md, "Key transitions"),
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
import stat
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

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
# Marks of an atsource registry: SQLite's application_id (the bytes "ATRG") and a format row.
APPLICATION_ID = 0x41545247
FORMAT = "atsource-registry 1"
# How long to wait for another process's write lock before saying "registry busy": the
# registry's own transactions last milliseconds.
BUSY_TIMEOUT_S = 3.0

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


def _read_key_file(kf: Path) -> bytes:
    """The key in a key file that only its owner can read (anything looser is refused: the
    registry key opens every device's secrets)."""
    try:
        st = kf.stat()
        if st.st_mode & 0o077:
            raise UserError(
                f"{kf}: the registry key file can be read by others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): run `chmod 600 {kf}` (and consider the key "
                "exposed if others could read it)"
            )
        text = kf.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{kf}: cannot read the registry key file: {e}") from None
    return _parse_key(text, str(kf))


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


class RegistryBusy(UserError):
    """Another process holds the registry's write lock (for longer than BUSY_TIMEOUT_S)."""


class RegistryDamaged(UserError):
    """The registry file is damaged (a corrupted page) or is not a registry at all."""


class NotARegistry(UserError):
    """A SQLite database of something else (e.g. the readings store) given as the registry."""


class KeyUnreadable(UserError):
    """One key generation's secret does not decrypt (a damaged or tampered row)."""


def restore_hint(path: Path) -> str:
    return f"restore it from a backup: atsource registry restore BACKUP --registry {path}"


def _sqlite_error(path: Path, e: sqlite3.Error) -> UserError:
    """One line for a SQLite failure: busy, damaged, or anything else on this file."""
    text = str(e)
    low = text.lower()
    if "locked" in low or "busy" in low:
        return RegistryBusy(
            f"registry busy: {path} is locked by another process (a provision, rotate or "
            "revoke still running?); try again when it has finished"
        )
    if isinstance(e, sqlite3.DatabaseError) and any(
        w in low for w in ("malformed", "not a database", "corrupt", "disk image")
    ):
        return RegistryDamaged(f"registry {path} is damaged ({text}): {restore_hint(path)}")
    return UserError(f"registry {path}: {text}")


def _link(tmp: Path, dest: Path) -> bool:
    """Put a finished file in place only if nothing is there (False if something is)."""
    try:
        os.link(tmp, dest)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: nearly as good
        if dest.exists():
            return False
        os.rename(tmp, dest)
    return True


def _is_sqlite(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(16) == b"SQLite format 3\0"


class Registry:
    """Open with ``Registry.open(path)``; safe to share between threads."""

    def __init__(self, path: Path, conn: sqlite3.Connection, key: bytes) -> None:
        self.path = path
        self._db = conn
        self._aead = AESGCM(key)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r})"

    @contextlib.contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with SQLite failures turned into one line."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as e:
                raise _sqlite_error(self.path, e) from None

    # ---- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: Path | None = None,
        *,
        create: bool = True,
        key_for: Path | None = None,
        readonly: bool = False,
    ) -> Registry:
        """Open the registry at ``path``; create it (and its key file) only when no file is
        there and ``create`` is true. An empty file, a file that is not an atsource registry,
        a damaged one, a missing or world-readable key file: one line, nothing written.
        ``key_for``: take the key of that registry path instead, and ``readonly``: change
        nothing in the file (both for checking a backup)."""
        path = Path(path) if path is not None else default_path()
        if not path.exists():
            if not create:
                raise UserError(
                    f"no registry at {path} (provisioning makes one; or give --registry or "
                    f"${PATH_ENV})"
                )
            cls._create(path)
        elif path.is_dir():
            raise UserError(f"{path} is a directory, not a registry")
        elif path.stat().st_size == 0:
            raise RegistryDamaged(
                f"{path} is an empty file, not a registry: {restore_hint(path)} (or delete it "
                "to start a new registry, provisioning with the readings store at hand, --db, "
                "so that no device number is issued twice)"
            )
        try:
            sqlite = _is_sqlite(path)
        except OSError as e:
            raise UserError(f"cannot read the registry {path}: {e.strerror or e}") from None
        if not sqlite:
            raise RegistryDamaged(f"{path} is not an atsource registry (not a SQLite database)")
        if not readonly:
            with contextlib.suppress(OSError):
                os.chmod(path, 0o600)
        try:
            conn = sqlite3.connect(
                f"file:{quote(str(path))}?mode={'ro' if readonly else 'rw'}",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                check_same_thread=False,
                isolation_level=None,
            )
        except sqlite3.Error as e:
            raise _sqlite_error(path, e) from None
        try:
            cls._identify(path, conn, readonly)
            key = cls._load_key(key_for or path)
            reg = cls(path, conn, key)
            reg._check_key()
        except BaseException:
            conn.close()
            raise
        return reg

    @classmethod
    def _create(cls, path: Path) -> None:
        """A new registry, built under a temporary name and linked into place (so ``path``
        is never an empty or half-made file; two processes creating it: one wins)."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = cls._load_key(path, create=True)
        tmp = path.with_name(f".{path.name}.new-{os.getpid()}-{threading.get_ident()}")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        try:
            conn = sqlite3.connect(tmp, isolation_level=None)
            try:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.executescript(_SCHEMA)
                reg = cls(path, conn, key)
                conn.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT.encode(),))
                conn.execute(
                    "INSERT INTO meta VALUES ('registry_id', ?)", (os.urandom(16).hex().encode(),)
                )
                conn.execute(
                    "INSERT INTO meta VALUES ('key_check', ?)",
                    (reg._seal(_CHECK, "meta/key_check"),),
                )
            finally:
                conn.close()
            _link(tmp, path)  # False: another process made it first, as good
        except sqlite3.Error as e:
            raise UserError(f"cannot create the registry {path}: {e}") from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    @staticmethod
    def _identify(path: Path, conn: sqlite3.Connection, readonly: bool = False) -> None:
        """Refuse a SQLite file that is not ours (e.g. the readings store) and a damaged one;
        mark a registry made before the marks existed."""
        try:
            if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise RegistryDamaged(f"registry {path} is damaged: {restore_hint(path)}")
            app = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if app != APPLICATION_ID:
                legacy = app == 0 and {"meta", "devices", "keys"} <= tables
                if legacy:
                    legacy = (
                        conn.execute("SELECT 1 FROM meta WHERE k = 'key_check'").fetchone()
                        is not None
                    )
                if not legacy:
                    raise NotARegistry(
                        f"{path} is not an atsource registry (a SQLite database of something "
                        "else: the readings store?)"
                    )
                if readonly:
                    return
                # Made by an earlier version: give it its marks (later, if the file cannot be
                # written now: a receiver may only read it).
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(
                        "INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT.encode(),)
                    )
                    conn.execute(
                        "INSERT OR IGNORE INTO meta VALUES ('registry_id', ?)",
                        (os.urandom(16).hex().encode(),),
                    )
                    conn.execute("COMMIT")
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        except sqlite3.Error as e:
            raise _sqlite_error(path, e) from None

    @staticmethod
    def key_file_for(path: Path) -> Path:
        env = os.environ.get(KEY_FILE_ENV)
        return Path(env).expanduser() if env else path.with_name(path.name + ".key")

    @classmethod
    def _load_key(cls, path: Path, *, create: bool = False) -> bytes:
        env = os.environ.get(KEY_ENV)
        if env:
            return _parse_key(env, KEY_ENV)
        kf = cls.key_file_for(path)
        if kf.exists():
            return _read_key_file(kf)
        if not create:
            # Never on a read path: a mistyped key file name must not get a fresh key.
            raise UserError(
                f"registry {path}: its key file {kf} does not exist (check ${KEY_FILE_ENV} "
                f"or ${KEY_ENV}); nothing was created"
            )
        # A new registry: a fresh random key, written 0600 (O_EXCL: two processes never
        # both win).
        key = os.urandom(32)
        kf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(kf, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return _read_key_file(kf)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex() + "\n")
        return key

    def _check_key(self) -> None:
        with self._guard() as db:
            row = db.execute("SELECT v FROM meta WHERE k = 'key_check'").fetchone()
            if row is None:
                raise UserError(f"registry {self.path}: key check value missing")
            try:
                ok = self._unseal(bytes(row[0]), "meta/key_check") == _CHECK
            except InvalidTag:
                ok = False
            if not ok:
                raise UserError(
                    f"wrong registry key for {self.path} (check ${KEY_ENV} or the key file "
                    f"{self.key_file_for(self.path)})"
                )

    @property
    def registry_id(self) -> str:
        """A random id drawn when the registry was made; a backup restored keeps it."""
        with self._guard() as db:
            r = db.execute("SELECT v FROM meta WHERE k = 'registry_id'").fetchone()
        return bytes(r[0]).decode() if r else ""

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
            raise KeyUnreadable(
                f"registry {self.path}: a secret does not decrypt ({aad}): "
                + restore_hint(self.path)
            ) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ---- the receiver's API ------------------------------------------------------------------
    def key_entry(self, kid: bytes) -> KeyEntry | None:
        """Key and context IV for a kid, or None when unknown. A pending generation is valid:
        its secret went to one board only, so a frame that opens with it is that board's (an
        interrupted provision or rotate must not lose what the board seals meanwhile). A
        retired generation past its grace period, and a revoked one, come back revoked."""
        with self._guard() as db:
            row = db.execute(
                "SELECT state, master, valid_until FROM keys WHERE kid = ?", (bytes(kid),)
            ).fetchone()
        if row is None:
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
        with self._guard() as db:
            rows = db.execute(
                f"SELECT {self._DEV_COLS} FROM devices d ORDER BY d.number"
            ).fetchall()
        return [self._device_row(r) for r in rows]

    def device(self, number: int) -> DeviceRow | None:
        with self._guard() as db:
            r = db.execute(
                f"SELECT {self._DEV_COLS} FROM devices d WHERE d.number = ?", (number,)
            ).fetchone()
        return None if r is None else self._device_row(r)

    def device_by_board(self, bhash: str) -> DeviceRow | None:
        with self._guard() as db:
            r = db.execute(
                f"SELECT {self._DEV_COLS} FROM devices d WHERE d.board_hash = ?", (bhash,)
            ).fetchone()
        return None if r is None else self._device_row(r)

    def seed(self, kid: bytes) -> bytes:
        """The RNG seed provisioned with one key generation (never print it)."""
        with self._guard() as db:
            r = db.execute("SELECT seed FROM keys WHERE kid = ?", (bytes(kid),)).fetchone()
        if r is None:
            raise UserError(f"unknown kid {bytes(kid).hex()}")
        return self._secret(bytes(r[0]), _kid_aad(kid, "seed"))

    def master(self, kid: bytes) -> bytes:
        """The master secret of one key generation (for provisioning; never print it)."""
        with self._guard() as db:
            r = db.execute("SELECT master FROM keys WHERE kid = ?", (bytes(kid),)).fetchone()
        if r is None:
            raise UserError(f"unknown kid {bytes(kid).hex()}")
        return self._secret(bytes(r[0]), _kid_aad(kid))

    def begin_device(
        self,
        bhash: str,
        board: str,
        site: str,
        policy_hash: str | None,
        *,
        seen: Iterable[int] = (),
    ) -> tuple[DeviceRow, bytes]:
        """Allocate the next device number and a pending first key generation (new master
        and seed drawn here), in one transaction. Returns the row and the pending kid.

        Numbers only go up: above every number this registry ever issued (a high-water mark
        kept in ``meta``, so a discarded attempt's number is not issued again) and above every
        number in ``seen`` (the device numbers a readings store already holds frames of)."""
        now = time.time()
        floor = max(seen, default=0)
        with self._tx() as db:
            hw = db.execute("SELECT v FROM meta WHERE k = 'last_number'").fetchone()
            last = max(
                db.execute("SELECT coalesce(max(number), 0) FROM devices").fetchone()[0],
                int(bytes(hw[0])) if hw else 0,
                floor,
            )
            number = last + 1
            if number >= 1 << 32:
                raise UserError("no device number left below 2^32")
            if db.execute("SELECT 1 FROM devices WHERE board_hash = ?", (bhash,)).fetchone():
                raise UserError("this board is already in the registry")
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_number', ?)", (str(number).encode(),)
            )
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
        with self._guard() as db:
            r = db.execute(
                "SELECT kid FROM keys WHERE device = ? AND state = 'pending'", (number,)
            ).fetchone()
        return None if r is None else bytes(r[0])

    def active_kid(self, number: int) -> bytes | None:
        with self._guard() as db:
            r = db.execute(
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
        with self._guard() as db:
            rows = db.execute(q + " ORDER BY device, generation", args).fetchall()
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


# ---- backup and restore ------------------------------------------------------------------------


def _copy_db(db: sqlite3.Connection, dest: Path) -> None:
    """A consistent copy of ``db`` (SQLite's online backup) as a new file ``dest``, 0600,
    made under a temporary name and linked into place only once it is whole and checked."""
    tmp = dest.with_name(f".{dest.name}.new-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        out = sqlite3.connect(tmp)
        try:
            db.backup(out)
            if out.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise UserError(f"the copy {dest} does not check out: nothing written")
        finally:
            out.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if not _link(tmp, dest):
            raise UserError(f"{dest} exists: give a new file name")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def backup(reg: Registry, dest: Path) -> int:
    """Copy the registry to ``dest`` (a new file), consistent even while others use it.
    Secrets stay encrypted under the registry key, which is NOT in the copy: keep the key
    file (or ``$ATSOURCE_REGISTRY_KEY``) apart from the backups. Returns the device count."""
    dest = Path(dest)
    if dest.exists():
        raise UserError(f"{dest} exists: give a new file name")
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with reg._guard() as db:
        _copy_db(db, dest)
        return int(db.execute("SELECT count(*) FROM devices").fetchone()[0])


def restore(src: Path, path: Path | None = None, *, force: bool = False) -> tuple[int, Path | None]:
    """Put the backup ``src`` in place of the registry at ``path``. The backup must be a whole
    atsource registry whose every secret decrypts with this registry's key. A working registry
    is replaced only with ``force`` (it would lose what changed since the backup); a damaged
    or empty one is kept beside it as ``<name>.damaged-<time>``. Returns (devices, kept)."""
    path = Path(path) if path is not None else default_path()
    src = Path(src)
    if not src.is_file():
        raise UserError(f"no backup file {src}")
    with Registry.open(src, create=False, key_for=path, readonly=True) as b:
        with b._guard() as db:
            rows = db.execute("SELECT kid, master, seed FROM keys").fetchall()
            n = int(db.execute("SELECT count(*) FROM devices").fetchone()[0])
        for kid, master, seed in rows:
            try:
                b._unseal(bytes(master), _kid_aad(bytes(kid)))
                b._unseal(bytes(seed), _kid_aad(bytes(kid), "seed"))
            except InvalidTag:
                raise UserError(
                    f"{src}: the secret of kid {bytes(kid).hex()} does not decrypt: not restored"
                ) from None
    kept: Path | None = None
    if path.exists():
        try:
            Registry.open(path, create=False).close()
            healthy = True
        except RegistryDamaged:
            healthy = False
        except NotARegistry:
            if not force:
                raise
            healthy = True
        if healthy and not force:
            raise UserError(
                f"{path} is a working registry: restoring {src} would lose every change made "
                "since that backup (add --force to replace it anyway)"
            )
        kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        if healthy:
            kept = path.with_name(f"{path.name}.replaced-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, kept)
        # A hot journal of the old file must never be rolled into the restored one.
        journal = path.with_name(path.name + "-journal")
        if journal.exists():
            os.replace(journal, kept.with_name(kept.name + "-journal"))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    src_conn = sqlite3.connect(f"file:{quote(str(src))}?mode=ro", uri=True)
    try:
        _copy_db(src_conn, path)
    except sqlite3.Error as e:
        raise UserError(f"cannot restore {src}: {e}") from None
    finally:
        src_conn.close()
    return n, kept


def _kid_aad(kid: bytes, column: str = "master") -> str:
    return f"keys/{bytes(kid).hex()}/{column}"
