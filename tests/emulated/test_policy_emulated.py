"""The device's policy module, compiled to .mpy and run by the real MicroPython VM on both
emulated boards, computes the host's hash and refuses a bad stream on the console."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from atsource import paths
from atsource import policy as host
from atsource.boards import load_board
from atsource.emulator.engine import EmulatedBoard
from atsource.firmware_build import build, install
from worlds import ScriptedWorld

START = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z
MIN = 60_000_000

# Objects whose canonical form is easy to get wrong: escapes, non-BMP characters (a surrogate
# pair in the canonical form), key order by code point, integers beyond 32 bits.
TRICKY: list[Any] = [
    {"z": 1, "Z": 2, "é": 3, "🚲": 4, "\uffff": 5, "": 6, "a": {"b": [], "a": {}}},
    ['q"uote', "back\\slash", "\b\f\n\r\t", "\x00\x01\x1f\x7f", "Zürich ✓ 🚲 日本"],
    [2**70, -(2**40), 0, -1, True, False, None, [[[]]]],
]

MAIN = """\
import hashlib, json
from sensor import policy

p = policy.load()
print("hash " + p.hash.hex())
print("keep " + " ".join(sorted(p.streams)))
print("budget %d" % p.budget_milli)
for path in ("/tricky.json", "/tricky_ascii.json"):
    with open(path) as f:
        for o in json.load(f):
            print("canon " + hashlib.sha256(policy.canonical(policy.unpair(o))).digest().hex())
try:
    policy.load("/float.json")
except policy.PolicyError as e:
    print("refused file: " + str(e))
print("done")
"""


def _flash(
    board: str, flash: Path, tmp: Path, pol: dict[str, Any], raw: bytes | None = None
) -> None:
    # Only the module under test and the catalogue it reads are installed (as .mpy, as
    # deployed), so this test does not depend on the rest of the firmware.
    fw = tmp / "fw"
    (fw / "sensor").mkdir(parents=True)
    (fw / "sensor" / "__init__.py").write_text("")
    for name in ("policy.py", "catalogue.py"):
        shutil.copy(paths.FIRMWARE / "sensor" / name, fw / "sensor" / name)
    install(build(load_board(board), fw), flash)
    assert (flash / "sensor" / "policy.mpy").exists() and not (
        flash / "sensor" / "policy.py"
    ).exists()
    (flash / "main.py").write_text(MAIN)
    (flash / "policy.json").write_bytes(raw if raw is not None else host.canonical(pol))
    (flash / "tricky.json").write_text(json.dumps(TRICKY, ensure_ascii=False), encoding="utf-8")
    (flash / "tricky_ascii.json").write_text(json.dumps(TRICKY))
    (flash / "float.json").write_text('{"policy": 1, "budget": {"epsilon_milli_per_day": 2.4}}')


def _run(board: str, flash: Path) -> list[str]:
    emu = EmulatedBoard(board, flash, world=ScriptedWorld(START), start_us=START, seed=1)
    emu.run(duration_us=MIN)
    lines = [line for _, line in emu.lines]
    assert "done" in lines, lines
    return lines


def test_device_hash_matches_the_host(board_name: str, flash: Path, tmp_path: Path) -> None:
    pol = host.load_policy(host.DEFAULT)
    # Exactly what `atsource provision` writes: the canonical bytes (ASCII, \\u escapes).
    _flash(board_name, flash, tmp_path, pol)
    lines = _run(board_name, flash)
    digest = host.policy_hash(pol)
    assert f"hash {digest.hex()}" in lines
    assert f"policy {digest[:4].hex()} in force: ble doorway env health motion" in lines
    assert "keep ble doorway env health motion" in lines and "budget 2400" in lines
    want = [hashlib.sha256(host.canonical(o)).hexdigest() for o in TRICKY]
    assert [x[6:] for x in lines if x.startswith("canon ")] == want + want
    assert "refused file: policy holds a float: write scaled integers" in lines


def test_device_refuses_a_bad_stream_and_keeps_the_rest(
    board_name: str, flash: Path, tmp_path: Path
) -> None:
    pol = copy.deepcopy(host.load_policy(host.DEFAULT))
    pol["streams"]["ble"]["sketch_bits"] = 1000
    pol["streams"]["env"]["window_s"] = 7000
    # A hand-written file with non-ASCII text in it, laid out as a person would write it.
    pol["purpose"] = "Plan the plaza, Zürich-style 🚲"
    raw = json.dumps(pol, indent=2, ensure_ascii=False).encode()
    _flash(board_name, flash, tmp_path, pol, raw)
    lines = _run(board_name, flash)
    tag = host.policy_hash(pol)[:4].hex()
    assert f"hash {host.policy_hash(pol).hex()}" in lines
    assert (
        f"policy {tag}: stream ble refused: streams.ble.sketch_bits: must be a power of two "
        "from 256 to 65536" in lines
    )
    assert (
        f"policy {tag}: stream env refused: streams.env.window_s: must divide 86400 "
        "(whole windows per day)" in lines
    )
    assert f"policy {tag} in force: doorway health motion" in lines
    assert "keep doorway health motion" in lines
