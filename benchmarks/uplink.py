"""Device side of the uplink in the emulator: sealing cost per frame and flash writes per day.

The emulator does not model CPU time (the virtual clock only moves when the firmware sleeps),
so the sealing cost is the wall time the real MicroPython VM takes per seal on this machine
(AES itself runs in Node's crypto, so it is a lower bound for a board). Flash writes are
counted by the firmware itself (``Counter.writes``, ``Outbox.writes``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from atsource import paths
from atsource.boards import load_board
from atsource.emulator.api import prepare_flash
from atsource.emulator.engine import EmulatedBoard
from atsource.keys import derive, make_kid

START_US = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z
KID = make_kid(7, 1)
KEY, IV = derive(bytes(range(16)), KID)

_PRELUDE = f"""
import time
from sensor import cbor
from sensor.identity import Identity
from sensor.uplink import Uplink
IDENT = Identity({KID!r}, {KEY!r}, {IV!r}, bytes(32))
REC = cbor.dumps({{0: 1780272000, 1: 900, 2: b"\\x01\\x02\\x03\\x04", 7: 1, 3: 2153}})
"""


def _run(board_name: str, main: str, duration_us: int) -> tuple[EmulatedBoard, dict[str, float]]:
    board = load_board(board_name)
    marks: dict[str, float] = {}

    def on_line(_t: int, line: str) -> None:
        if line.startswith("mark "):
            marks[line.split()[1]] = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp)
        prepare_flash(board, flash, firmware=paths.FIRMWARE)
        (flash / "main.py").write_text(_PRELUDE + main)
        emu = EmulatedBoard(
            board,
            flash,
            start_us=START_US,
            seed=1,
            on_line=on_line,
            on_frame=lambda _f: True,
        )
        emu.run(duration_us=duration_us)
    return emu, marks


def device_sealing(n: int = 300) -> dict[str, Any]:
    """Wall time per seal (pad, counter, AES-CCM, COSE) in the VM, and the frame's bytes."""
    # A board-layer call after each mark flushes the console, so the host stamps it on time.
    main = f"""
from sensor import sealer
from sensor.counter import Counter
s = sealer.Sealer(IDENT.kid, IDENT.key, IDENT.iv, Counter("/counter", 64))
p = sealer.pad(REC)
s.seal(p)
print("mark a"); time.sleep_ms(1)
for _ in range({n}):
    f = s.seal(p)
print("mark b"); time.sleep_ms(1)
up = Uplink(IDENT, {{}}, fresh=True)
print("mark c"); time.sleep_ms(1)
for _ in range({n}):
    up.submit(REC)
print("mark d"); time.sleep_ms(1)
print("bytes", len(REC), len(p), len(f))
"""
    runs = {}
    for board in ("pico-w", "esp32-devkitc"):
        emu, m = _run(board, main, 10_000_000)
        sizes = next(line for _, line in emu.lines if line.startswith("bytes")).split()[1:]
        runs[board] = {
            "seal_us_per_frame_wall": round((m["b"] - m["a"]) / n * 1e6, 1),
            "submit_us_per_frame_wall": round((m["d"] - m["c"]) / n * 1e6, 1),
            "record_bytes": int(sizes[0]),
            "padded_bytes": int(sizes[1]),
            "frame_bytes": int(sizes[2]),
        }
    return {
        "runs": runs,
        "note": "wall time of the MicroPython VM on this host (CPU time is not modelled); "
        "submit = seal + append to the flash outbox",
    }


def counter_writes() -> dict[str, Any]:
    """Flash writes in a simulated day: one record per window for every stream (96 env, 4 x 24
    counts, 96 health), delivered over the host link as they are made."""
    main = """
up = Uplink(IDENT, {}, fresh=True)
for w in range(96):
    k = 2 + (4 if w % 4 == 3 else 0)  # env + health; the four hourly counts once an hour
    for _ in range(k):
        up.submit(REC)
    up.pump()
    time.sleep(900)
print("writes", up.counter.writes, up.outbox.writes, up.sent)
"""
    emu, _ = _run("pico-w", main, 86_400_000_000 + 60_000_000)
    c, o, sent = map(int, next(x for _, x in emu.lines if x.startswith("writes")).split()[1:])
    return {
        "records_per_day": sent,
        "counter_writes_per_day": c,
        "counter_reserve": 64,
        "outbox_writes_per_day": o,
        "note": "counter: one 14-byte file write + rename per 64 values (and one per boot); "
        "outbox: one append per record; the head record is deleted, not written, when the "
        "outbox drains",
    }


if __name__ == "__main__":
    import json

    print(json.dumps({"device_sealing": device_sealing(), "counter_writes": counter_writes()}))
