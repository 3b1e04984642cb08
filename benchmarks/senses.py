"""Cost of the noise sense on the emulated VM: CPU per block of the firmware's A-weighting
and level (sensor.loudness) and per board-day at one block a minute (docs/sensors.md).

The figure is the node process's own CPU time (/proc/PID/schedstat) between the first and the
last block of a run, so host-side work (the microphone model) does not count. Floor: the same
run reading the same blocks with a bare loop over the samples (`s += buf[i] >> 12`), the
least any Python pass over a block costs; the emulator's own cost of an I2S read is in both
and cancels in the difference to a third run that only reads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from atsource import paths
from atsource.boards import load_board
from atsource.emulator.api import prepare_flash
from atsource.emulator.engine import EmulatedBoard
from atsource.emulator.mic_model import STARTUP_FRAMES, LevelProfile, MicModel

START_US = 1_780_304_400_000_000
BLOCKS = 150
ROUNDS = 5  # best of: the figure is CPU time, but a shared machine still disturbs caches
BLOCKS_PER_DAY = 1440  # one a minute
GOAL_CPU_S_PER_DAY = 5.0

_MAIN = """
from sensor import hal, i2smic, loudness
mic = i2smic.Mic(hal.Board().i2s_mic)
meter = loudness.LevelMeter(mic)
def bare(buf):
    s = 0
    for i in range(len(buf)):
        s += buf[i] >> 12
    return s
for k in range(%d):
    %s
print("done")
"""
_BODIES = {
    "level": "meter.measure()",
    "bare": "mic.read(); bare(mic.buf)",
    "read": "mic.read()",
}


class _World:
    """Only a microphone; notes the VM's CPU time at its first and last block."""

    def __init__(self) -> None:
        self.start_us = START_US
        self.end_us = START_US + 86_400_000_000
        self.mic = MicModel(LevelProfile(lambda t: 62.0), seed=1)
        self.emu: EmulatedBoard | None = None
        self.cpu_ns: list[int] = []

    def _cpu(self) -> int:
        assert self.emu is not None and self.emu._vm is not None
        with open(f"/proc/{self.emu._vm.proc.pid}/schedstat") as f:
            return int(f.read().split()[0])

    def i2s_device(self, bus: int) -> Any:
        return self

    # The microphone's side: once per block (the start-up frames are zeros, not samples).
    startup_frames = STARTUP_FRAMES

    def samples(self, t_us: int, n: int, rate: int) -> bytes:
        self.cpu_ns.append(self._cpu())
        return self.mic.samples(t_us, n, rate)

    def events_until(self, t_us: int) -> list[Any]:
        return []

    def i2c_device(self, bus: int, address: int) -> None:
        return None

    def pin_level(self, pin: Any, t_us: int) -> int:
        return 1

    def ble_scan(self, *a: Any) -> None: ...

    def ble_scan_stop(self, t_us: int) -> None: ...

    def ground_truth(self, window_s: int) -> list[dict[str, Any]]:
        return []


def _per_block_ms(board_name: str, body: str) -> float:
    board = load_board(board_name)
    with tempfile.TemporaryDirectory() as tmp:
        flash = Path(tmp)
        prepare_flash(board, flash, firmware=paths.FIRMWARE)
        (flash / "main.py").write_text(_MAIN % (BLOCKS, body))
        world = _World()
        emu = EmulatedBoard(board, flash, world=world, start_us=START_US, seed=1)  # type: ignore[arg-type]
        world.emu = emu
        emu.run(duration_us=3_600_000_000)
        assert any(line == "done" for _, line in emu.lines), emu.lines[-5:]
    marks = world.cpu_ns
    return (marks[-1] - marks[0]) / (len(marks) - 1) / 1e6


def noise_cost() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("pico-w", "esp32-devkitc"):
        ms = {k: min(_per_block_ms(name, b) for _ in range(ROUNDS)) for k, b in _BODIES.items()}
        level = ms["level"] - ms["read"]
        floor = ms["bare"] - ms["read"]
        day = level * BLOCKS_PER_DAY / 1000
        out[name] = {
            "level_cpu_ms_per_block": round(level, 3),
            "floor_bare_loop_ms_per_block": round(floor, 3),
            "ratio_to_floor": round(level / floor, 1) if floor > 0 else None,
            "emulated_read_ms_per_block": round(ms["read"], 3),
            "cpu_s_per_board_day": round(day, 2),
            "meets_goal": day <= GOAL_CPU_S_PER_DAY,
        }
    return {
        "boards": out,
        "goal_cpu_s_per_board_day": GOAL_CPU_S_PER_DAY,
        "blocks_per_day": BLOCKS_PER_DAY,
        "note": "node CPU per 512-frame block (16 kHz, 384 frames measured) of the VM, best of 5, "
        "less a run that only reads the blocks; floor: a bare loop over the block",
    }
