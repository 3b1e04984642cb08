"""The emulated heap lies where the board's does (docs/emulator.md, "Where the heap lies").

MicroPython's collector is conservative: a word equal to the address of a block's head keeps
that block. On a board the heap is in the chip's data RAM, so plain small numbers never look
like pointers into it; a VM heap at the bottom of WebAssembly memory made them do so, and the
live heap a run measured depended on which dead objects such numbers happened to pin."""

from __future__ import annotations

from pathlib import Path

from atsource.emulator.engine import EmulatedBoard
from worlds import ScriptedWorld

START = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z

# The data RAM the port's MicroPython heap comes from. esp32: the heap is malloc'd from the
# ESP-IDF heap (ports/esp32/main.c), in internal DRAM, 0x3FFAE000-0x3FFFFFFF (ESP32 Technical
# Reference Manual, "System and Memory": SRAM1 and SRAM2 on the data bus). rp2: between
# __GcHeapStart and __GcHeapEnd (ports/rp2/main.c), in the RP2040's SRAM, 0x20000000-0x20041FFF
# (RP2040 datasheet, "Address map").
RAM = {"esp32-devkitc": (0x3FFAE000, 0x40000000), "pico-w": (0x20000000, 0x20042000)}

# A stepped entry: collections happen between steps, and inside a step gc.mem_alloc() is the
# live heap measured when the last step returned.
PROBE = """
import gc
from array import array


class Probe:
    def __init__(self):
        self.n = 0
        self.keep = None

    def step(self):
        self.n += 1
        if self.n == 1:
            print("heap", id(bytearray(16)), id(self))
            # Readings below 1 MB, every 64: numbers, not pointers, on any board.
            self.keep = array("I", range(0, 0x100000, 64))
        elif self.n == 2:
            print("before", gc.mem_alloc())
            junk = [bytearray(48) for _ in range(300)]
            junk = None
        elif self.n == 3:
            print("after", gc.mem_alloc())
        return 1000


def setup():
    return Probe()
"""


def _run(board: str, flash: Path) -> dict[str, list[int]]:
    (flash / "probe.py").write_text(PROBE)
    emu = EmulatedBoard(
        board,
        flash,
        world=ScriptedWorld(START),
        start_us=START,
        seed=1,
        entry="probe",
        enforce_heap=False,  # the numbers alone are 64 KB, the budget's size
    )
    emu.run(duration_us=5_000_000)
    out = {}
    for _, line in emu.lines:
        key, _, rest = line.partition(" ")
        if key in ("heap", "before", "after"):
            out[key] = [int(x) for x in rest.split()]
    assert set(out) == {"heap", "before", "after"}, emu.lines
    return out


def test_heap_lies_in_the_boards_ram(board_name: str, flash: Path) -> None:
    lo, hi = RAM[board_name]
    for addr in _run(board_name, flash)["heap"]:
        assert lo <= addr < hi, f"{addr:#x} outside {lo:#x}-{hi:#x}"


def test_small_numbers_keep_no_dead_object(board_name: str, flash: Path) -> None:
    # 300 dead bytearrays (600 blocks' heads) while 16,384 numbers below 1 MB are live: with
    # the heap at the bottom of memory a quarter of the dead heads matched one and stayed.
    out = _run(board_name, flash)
    assert out["after"][0] - out["before"][0] <= 64, out


# The runner counts the live heap from the collector's own tables (runner.mjs heapSample),
# following the areas the split heap grows by. A step that keeps more than the first area
# holds makes the heap grow; the figure must count all of it.
GROW = """
import gc


class Grow:
    def __init__(self):
        self.n = 0
        self.keep = []

    def step(self):
        self.n += 1
        if self.n == 2:
            print("before", gc.mem_alloc())
            self.keep = [bytearray(1024) for _ in range(400)]  # 400 KB: more than the heap
        elif self.n == 3:
            print("after", gc.mem_alloc())
        return 1000


def setup():
    return Grow()
"""


def test_a_heap_grown_past_its_first_area_is_counted_whole(board_name: str, flash: Path) -> None:
    (flash / "grow.py").write_text(GROW)
    emu = EmulatedBoard(board_name, flash, world=ScriptedWorld(START), start_us=START, seed=1,
                        entry="grow", enforce_heap=False)  # fmt: skip
    stats = emu.run(duration_us=5_000_000)
    out = {k: int(v) for k, _, v in (line.partition(" ") for _, line in emu.lines)
           if k in ("before", "after")}  # fmt: skip
    assert set(out) == {"before", "after"}, emu.lines
    # 400 blocks of 1,024 bytes (1,040 with their heads' rounding: 65 blocks of 16) and a list
    assert out["after"] - out["before"] >= 400 * 1024, out
    assert stats.heap_peak >= 400 * 1024
