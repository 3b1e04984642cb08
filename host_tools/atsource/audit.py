"""The privacy audit: scan every byte a board emitted for the identifiers of the crowd it saw.

Given the BLE addresses and device names a scenario put on the air, the audit builds every
common encoding of each (raw bytes, bytes reversed, hex lower/upper with and without colons,
base64, and 8-byte truncations of SHA-256 and of HMAC-SHA256 under an all-zero key, raw and hex)
and looks for any of them in console output, flash files and uplink records before
encryption. One hit fails the audit.

Matching is by sliding windows over each blob against hash sets, one pass per needle length,
so a day of console output against tens of thousands of addresses takes well under a second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_ZERO_KEY = bytes(32)
_MIN_NAME = 4  # shorter names ("Bob") would match ordinary words by chance


@dataclass
class Hit:
    source: str
    offset: int
    form: str  # which encoding matched; never the identifier itself


@dataclass
class AuditResult:
    identifiers: int
    needles: int
    bytes_scanned: int
    sources: int
    hits: list[Hit] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.hits

    def summary(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL ({len(self.hits)} hits)"
        return (
            f"privacy audit {verdict}: {self.identifiers} identifiers in {self.needles} "
            f"encodings, {self.bytes_scanned} bytes from {self.sources} sources"
        )


def _forms(ident: bytes, is_address: bool) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = [("raw", ident)]
    if is_address:
        rev = ident[::-1]
        out += [("reversed", rev)]
        for label, b in (("", ident), ("reversed ", rev)):
            h = b.hex()
            out += [
                (label + "hex", h.encode()),
                (label + "HEX", h.upper().encode()),
                (label + "hex:", ":".join(h[i : i + 2] for i in range(0, 12, 2)).encode()),
                (label + "HEX:", ":".join(h[i : i + 2] for i in range(0, 12, 2)).upper().encode()),
            ]
    else:
        out += [
            ("lower", ident.lower()),
            ("utf-16", ident.decode(errors="ignore").encode("utf-16-le")),
        ]
    out.append(("base64", base64.b64encode(ident).rstrip(b"=")))
    sha = hashlib.sha256(ident).digest()[:8]
    mac = hmac.new(_ZERO_KEY, ident, hashlib.sha256).digest()[:8]
    out += [
        ("sha256[:8]", sha),
        ("sha256[:8] hex", sha.hex().encode()),
        ("hmac0[:8]", mac),
        ("hmac0[:8] hex", mac.hex().encode()),
    ]
    return out


class Auditor:
    """``raw``: signatures of raw sensor data that must never leave a driver (a PMS5003 frame
    header, a run of audio samples), by name; looked for raw, in hex and in base64."""

    def __init__(
        self, addresses: Iterable[bytes], names: Iterable[str], raw: dict[str, bytes] | None = None
    ) -> None:
        self._by_len: dict[int, dict[bytes, str]] = {}
        self.identifiers = 0
        for a in addresses:
            self._add(bytes(a), True)
        for n in names:
            b = n.encode()
            if len(b) >= _MIN_NAME:
                self._add(b, False)
        for label, sig in (raw or {}).items():
            for form, needle in (
                ("raw", sig),
                ("hex", sig.hex().encode()),
                ("HEX", sig.hex().upper().encode()),
                ("base64", base64.b64encode(sig).rstrip(b"=")),
            ):
                self._by_len.setdefault(len(needle), {})[needle] = f"{label} {form}"

    def _add(self, ident: bytes, is_address: bool) -> None:
        self.identifiers += 1
        kind = "address" if is_address else "name"
        for form, needle in _forms(ident, is_address):
            if len(needle) >= 4:
                self._by_len.setdefault(len(needle), {})[needle] = f"{kind} {form}"

    @property
    def needles(self) -> int:
        return sum(len(d) for d in self._by_len.values())

    def scan(self, blobs: Iterable[tuple[str, bytes]]) -> AuditResult:
        res = AuditResult(self.identifiers, self.needles, 0, 0)
        for source, blob in blobs:
            res.sources += 1
            res.bytes_scanned += len(blob)
            for ln, table in self._by_len.items():
                for i in range(len(blob) - ln + 1):
                    form = table.get(blob[i : i + ln])
                    if form is not None:
                        res.hits.append(Hit(source, i, form))
        return res


def flash_blobs(flash_dir: Path) -> list[tuple[str, bytes]]:
    """Every file of an emulated board's flash, named by its path on the device."""
    return [
        ("flash:/" + p.relative_to(flash_dir).as_posix(), p.read_bytes())
        for p in sorted(flash_dir.rglob("*"))
        if p.is_file()
    ]
