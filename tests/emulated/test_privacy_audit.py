"""The privacy audit must catch a leak: a deliberately leaky build fails it, ours passes.

The leaky build is our firmware with one line added to the identifier path (a test double
that prints each address it hears, as careless counting firmware does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from atsource import paths
from atsource.audit import Auditor, flash_blobs
from atsource.boards import load_board
from atsource.emulator.api import make_world, prepare_flash
from atsource.emulator.engine import EmulatedBoard

HOUR = 3600 * 1_000_000


def _run(board: str, firmware: Path, flash: Path) -> tuple[Auditor, list[tuple[str, bytes]]]:
    b = load_board(board)
    prepare_flash(b, flash, firmware=firmware)
    world = make_world(b, "smoke", None, None)
    emu = EmulatedBoard(b, flash, world=world, start_us=world.start_us, seed=1, entry="sensor.app")
    emu.run(duration_us=HOUR)
    ids = world.names_and_addresses()
    console = "\n".join(line for _, line in emu.lines).encode()
    return Auditor(ids["addresses"], ids["names"]), [("console", console), *flash_blobs(flash)]


@pytest.mark.parametrize("board", ["esp32-devkitc", "pico-w"])
def test_our_build_passes_and_a_leaky_build_fails(board: str, tmp_path: Path) -> None:
    auditor, blobs = _run(board, paths.FIRMWARE, tmp_path / "ours")
    result = auditor.scan(blobs)
    assert result.passed, result.hits[:3]
    assert result.identifiers > 50

    leaky = tmp_path / "leaky-firmware"
    shutil.copytree(paths.FIRMWARE, leaky)
    src = leaky / "sensor" / "presence.py"
    text = src.read_text()
    hook = "        m = self._msg\n"
    assert hook in text
    src.write_text(text.replace(hook, "        print('seen', bytes(addr).hex())\n" + hook, 1))
    auditor, blobs = _run(board, leaky, tmp_path / "leaky")
    result = auditor.scan(blobs)
    assert not result.passed
    assert any(h.source == "console" and "hex" in h.form for h in result.hits)
