"""The public history of the fleet: an append-only, hash-chained log of events signed by the
operator's Ed25519 key (docs/register.md).

Each line of the log is one event, canonical JSON:

    {"v": 1, "seq": N, "time": "...Z", "event": TYPE, "device": "dev-000007",
     "data": {...}, "prev": HEX, "sig": HEX}

``prev`` is the SHA-256 of the previous line's canonical bytes (signature included; 64 zeros
for the first event), ``sig`` the Ed25519 signature of ``DOMAIN`` followed by the canonical
bytes of the event without ``sig``. So an edited event fails its signature, a removed or
reordered one breaks ``seq`` and ``prev``, and the signed head (count and last hash, published
beside the log) shows events cut from the end. Only public facts go in: device names, sites,
coarsened locations, kids (they travel in every frame), policies, firmware hashes; never a
board's unique id or a secret.

The commands that cause an event append it: ``provision`` (provisioned, policy_changed),
``keys rotate`` (key_rotated), ``keys revoke`` (key_revoked, retired), ``deploy``
(firmware_updated, for a provisioned board).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import UserError

VERSION = 1
DOMAIN = b"atsource-register-event-v1\n"
HEAD_DOMAIN = b"atsource-register-head-v1\n"
GENESIS = "0" * 64
EVENTS = (
    "provisioned",
    "policy_changed",
    "key_rotated",
    "key_revoked",
    "firmware_updated",
    "retired",
)
LOG_ENV = "ATSOURCE_REGISTER_LOG"
KEY_ENV = "ATSOURCE_OPERATOR_KEY"

Event = dict[str, Any]


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def event_hash(ev: Event) -> str:
    return hashlib.sha256(canonical(ev)).hexdigest()


def unsigned(ev: Event) -> Event:
    return {k: v for k, v in ev.items() if k != "sig"}


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- where: beside the registry unless the environment says otherwise ----------------------


def log_path_for(registry_path: Path) -> Path:
    env = os.environ.get(LOG_ENV)
    return (
        Path(env).expanduser()
        if env
        else registry_path.with_name(registry_path.name + ".events.jsonl")
    )


def key_path_for(registry_path: Path) -> Path:
    env = os.environ.get(KEY_ENV)
    return (
        Path(env).expanduser()
        if env
        else registry_path.with_name(registry_path.name + ".operator.pem")
    )


# ---- keys -------------------------------------------------------------------------------------


def load_or_create_key(path: Path) -> Any:
    """The operator's Ed25519 private key (PEM, 0600), created on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            pass  # another process won the race: read its key
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise UserError(f"cannot read the operator key {path}: {e.__class__.__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"the operator key {path} is not an Ed25519 key")
    return key


def public_pem(private_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def load_public(pem: bytes) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise UserError("the operator's public key is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError("the operator's public key is not an Ed25519 key")
    return key


def fingerprint(public_key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(private_key: Any, ev: Event) -> Event:
    out = unsigned(ev)
    out["sig"] = private_key.sign(DOMAIN + canonical(out)).hex()
    return out


def signature_ok(public_key: Any, ev: Event) -> bool:
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(bytes.fromhex(str(ev.get("sig", ""))), DOMAIN + canonical(unsigned(ev)))
    except (InvalidSignature, ValueError):
        return False
    return True


def signed_head(private_key: Any, events: list[Event]) -> dict[str, Any]:
    head = {
        "v": VERSION,
        "count": len(events),
        "head": event_hash(events[-1]) if events else GENESIS,
        "time": now_text(),
    }
    head["sig"] = private_key.sign(HEAD_DOMAIN + canonical(head)).hex()
    return head


def head_ok(public_key: Any, head: dict[str, Any]) -> bool:
    from cryptography.exceptions import InvalidSignature

    body = {k: v for k, v in head.items() if k != "sig"}
    try:
        public_key.verify(bytes.fromhex(str(head.get("sig", ""))), HEAD_DOMAIN + canonical(body))
    except (InvalidSignature, ValueError):
        return False
    return True


# ---- the log file ----------------------------------------------------------------------------


def parse_lines(text: str) -> list[Event]:
    out: list[Event] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            raise UserError(f"event log line {n}: not JSON") from None
        if not isinstance(ev, dict):
            raise UserError(f"event log line {n}: not an event")
        out.append(ev)
    return out


def read(path: Path) -> list[Event]:
    try:
        return parse_lines(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one writer at a time (provision --batch threads)
        yield fd
    finally:
        os.close(fd)


class EventLog:
    """The operator's log: ``append`` signs and chains one event."""

    def __init__(self, path: Path, key_path: Path) -> None:
        self.path = path
        self.key_path = key_path

    @classmethod
    def for_registry(cls, registry_path: Path) -> EventLog:
        return cls(log_path_for(registry_path), key_path_for(registry_path))

    def events(self) -> list[Event]:
        return read(self.path)

    def key(self) -> Any:
        return load_or_create_key(self.key_path)

    def append(self, event: str, device: str, data: dict[str, Any]) -> Event:
        if event not in EVENTS:
            raise ValueError(f"unknown event type {event}")
        key = self.key()
        with _locked(self.path) as fd:
            with open(self.path, encoding="utf-8") as f:
                events = parse_lines(f.read())
            prev = event_hash(events[-1]) if events else GENESIS
            ev = sign(
                key,
                {
                    "v": VERSION,
                    "seq": len(events) + 1,
                    "time": now_text(),
                    "event": event,
                    "device": device,
                    "data": data,
                    "prev": prev,
                },
            )
            os.write(fd, canonical(ev) + b"\n")
            os.fsync(fd)
        return ev

    def device_events(self, device: str) -> list[Event]:
        return [e for e in self.events() if e.get("device") == device]

    def last(self, device: str, *types: str) -> Event | None:
        for e in reversed(self.device_events(device)):
            if not types or e.get("event") in types:
                return e
        return None


# ---- checking a published log ----------------------------------------------------------------


def check_chain(events: list[Event], public_key: Any, head: dict[str, Any] | None) -> list[str]:
    """Every way the log differs from what the operator signed, one line each (empty: intact)."""
    problems: list[str] = []
    prev = GENESIS
    expected = 1
    for pos, ev in enumerate(events, 1):
        seq = ev.get("seq")
        label = f"event {seq}" if isinstance(seq, int) else f"line {pos}"
        if not signature_ok(public_key, ev):
            problems.append(f"{label}: signature does not match: the event was edited")
        if isinstance(seq, int) and seq != expected:
            if seq > expected:
                gone = (
                    f"event {expected}" if seq == expected + 1 else f"events {expected}..{seq - 1}"
                )
                problems.append(f"{label}: {gone} removed (or moved)")
            else:
                problems.append(f"{label}: out of order (after event {expected - 1})")
        elif ev.get("prev") != prev:
            problems.append(f"{label}: does not follow the event before it (chain broken)")
        prev = event_hash(ev)
        expected = (seq if isinstance(seq, int) else expected) + 1
    if head is None:
        problems.append("no signed head: cannot tell whether events were cut from the end")
    elif not head_ok(public_key, head):
        problems.append("the head's signature does not match")
    else:
        if head.get("count") != len(events) or head.get("head") != prev:
            problems.append(
                f"the signed head names {head.get('count')} events ending in "
                f"{str(head.get('head'))[:16]}; the log holds {len(events)} ending in "
                f"{prev[:16]}: events were removed or changed"
            )
    return problems
