"""Board definitions: the JSON files in boards/, read by real-board tools and the emulator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import paths
from .errors import UserError


@dataclass(frozen=True)
class Board:
    name: str
    port: str  # MicroPython port: "esp32" or "rp2"
    chip: str
    machine: str
    pins: dict[str, Any]
    radios: tuple[str, ...]
    ram_budget: int  # bytes of heap our firmware may use (hard limit)
    ram_goal: int
    heap_total: int  # heap a real board offers MicroPython after boot
    # What the port's TLS stack keeps on that heap per open session (rp2: mbedTLS's record
    # buffers; esp32: none, they are in ESP-IDF's heap). Charged while a session is open and
    # allowed on top of ram_budget (docs/emulator.md, "Heap and the RAM budget").
    tls_heap: int
    # Where that heap lies in the board's address space (docs/emulator.md, "Where the heap
    # lies"): the emulator puts its heap there too.
    heap_start: int
    flash_size: int
    fs_size: int
    fs_block_size: int
    firmware_offset: int
    firmware_format: str
    usb_ids: tuple[dict[str, Any], ...]
    # Port truths the emulator follows (docs/emulator.md, "Per-port truth"): the year time()
    # counts from, and where the RTC stands after power-on (Unix seconds).
    epoch_year: int
    rtc_power_on_s: int
    raw: dict[str, Any] = field(repr=False, compare=False)


def _utc_date(text: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())


def board_names() -> list[str]:
    return sorted(p.stem for p in paths.BOARDS.glob("*.json"))


def load_board(name: str) -> Board:
    path = paths.BOARDS / f"{name}.json"
    if not path.is_file():
        known = ", ".join(board_names())
        raise UserError(f"unknown board '{name}' (known boards: {known})")
    try:
        raw = json.loads(path.read_text())
        return Board(
            name=raw["name"],
            port=raw["port"],
            chip=raw["chip"],
            machine=raw["machine"],
            pins=raw["pins"],
            radios=tuple(raw["radios"]),
            ram_budget=int(raw["ram_budget"]),
            ram_goal=int(raw["ram_goal"]),
            heap_total=int(raw["heap_total"]),
            tls_heap=int(raw.get("tls_heap", 0)),
            heap_start=int(raw["heap_start"]),
            flash_size=int(raw["flash_size"]),
            fs_size=int(raw["fs_size"]),
            fs_block_size=int(raw["fs_block_size"]),
            firmware_offset=int(raw["firmware_offset"]),
            firmware_format=raw["firmware_format"],
            usb_ids=tuple(raw["usb_ids"]),
            epoch_year=int(raw["epoch_year"]),
            rtc_power_on_s=_utc_date(raw["rtc_power_on"]),
            raw=raw,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path.name}: malformed board definition ({e})") from None
