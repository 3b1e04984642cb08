"""Power cuts for firmware file code under CPython.

A ``Flash`` stands in for a firmware module's ``open`` and ``os`` (patched as module globals) and
raises ``PowerCut`` at its n-th operation. Durability follows LittleFS, as the emulator does: a
file's data reaches the disk only when it is closed; a new file's (empty) entry is committed at
open; rename and remove are atomic. With ``torn=True`` a cut during a write or close also leaves
part of the pending data on disk, as a file system without copy-on-write could, so recovery of a
torn tail is exercised too.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import Any


class PowerCut(Exception):
    pass


class _File:
    def __init__(self, flash: Flash, path: str, mode: str) -> None:
        self.flash = flash
        self.path = path
        p = Path(path)
        if not p.exists():
            p.write_bytes(b"")
        self.base = p.read_bytes() if "a" in mode else b""
        self.pending = bytearray()

    def _tear(self, extra: bytes = b"") -> None:
        if self.flash.torn:
            data = bytes(self.pending) + extra
            Path(self.path).write_bytes(self.base + data[: max(1, len(data) // 2)])

    def write(self, data: Any) -> int:
        data = bytes(data)
        try:
            self.flash.tick()
        except PowerCut:
            self._tear(data)
            raise
        self.pending += data
        return len(data)

    def close(self) -> None:
        try:
            self.flash.tick()
        except PowerCut:
            self._tear()
            raise
        Path(self.path).write_bytes(self.base + bytes(self.pending))

    def __enter__(self) -> _File:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()


class Flash:
    """``open`` and the ``os`` functions the firmware uses, with a power cut at op ``cut_at``."""

    def __init__(self, cut_at: int | None = None, torn: bool = False) -> None:
        self.cut_at = cut_at
        self.torn = torn
        self.ops = 0

    def tick(self) -> None:
        self.ops += 1
        if self.cut_at is not None and self.ops >= self.cut_at:
            raise PowerCut

    def open(self, path: str, mode: str = "r") -> Any:
        self.tick()
        if "w" in mode or "a" in mode:
            return _File(self, path, mode)
        return builtins.open(path, mode)

    def rename(self, a: str, b: str) -> None:
        self.tick()
        os.rename(a, b)

    def remove(self, p: str) -> None:
        self.tick()
        os.remove(p)

    def stat(self, p: str) -> os.stat_result:
        return os.stat(p)

    def patch(self, monkeypatch: Any, *modules: Any) -> None:
        for m in modules:
            monkeypatch.setattr(m, "open", self.open, raising=False)
            monkeypatch.setattr(m, "os", self)
