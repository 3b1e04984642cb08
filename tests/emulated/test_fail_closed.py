"""A provisioned board whose policy (or identity) does not load fails closed: the whole firmware,
as deployed .mpy on the real MicroPython VM, in a world with people, doorway crossings and
phones. Nothing about people reaches the console, the flash or the uplink; one console line
gives the reason; health keeps running. The same scan finds people counts on a board whose
policy loads, so it can fail."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import pytest
from atsource import frame as rx
from atsource import paths
from atsource import policy as host
from atsource.boards import load_board
from atsource.emulator.api import make_world, prepare_flash
from atsource.emulator.engine import EmulatedBoard
from atsource.keys import derive, make_kid
from atsource.pytest_plugin import parse_outbox

MIN = 60 * 1_000_000
KID = make_kid(9, 1)
KEY, IV = derive(bytes(range(16, 32)), KID)
PEOPLE_IDS = (2, 3, 4, 5)  # door in, door out, motion, ble (docs/device.md)
CLOSED = "failing closed: nothing about people is collected or released, health only"
# A console line that speaks of people: a stream name or a count field of bench or gate lines.
PEOPLE_LINE = re.compile(r"door|motion|ble|distinct|\bin=|\bout=|\bn=\d|value=|below-k|\bwin\b")

_default = host.canonical(host.load_policy(host.DEFAULT))
_general = json.loads(_default)
_general["retention"]["device_days"] = 0

# name -> (policy.json bytes or None for no file, identity damaged, board, reason line start)
CASES = {
    "missing": (None, False, "pico-w", "policy: no policy file; "),
    "not-json": (
        b'{"policy": 1, "streams": ',
        False,
        "esp32-devkitc",
        "policy: policy file is not JSON; ",
    ),
    "float": (
        _default.replace(b'"coarsen_m":100', b'"coarsen_m":100.0'),
        False,
        "pico-w",
        "policy: policy holds a float: write scaled integers; ",
    ),
    "hostile-nesting": (
        b'{"policy": 1, "name": ' + b"[" * 4000 + b"]" * 4000 + b"}",
        False,
        "esp32-devkitc",
        "policy: policy file is nested too deeply or too large; ",
    ),
    "hostile-size": (
        b'{"policy": 1, "name": "' + b"x" * 60000 + b'"}',
        False,
        "pico-w",
        "policy: policy file is larger than 32768 bytes; ",
    ),
    "general-fault": (
        host.canonical(_general),
        False,
        "esp32-devkitc",
        f"policy {host.policy_hash(_general)[:4].hex()}: retention.device_days: must be an "
        "integer from 1 to 365; ",
    ),
    "identity-damaged": (_default, True, "pico-w", "identity: identity file damaged; "),
}


def _boot(
    board: str, flash: Path, policy: bytes | None, damaged: bool
) -> tuple[list[str], list[dict[int, object]], list[dict[int, object]]]:
    b = load_board(board)
    prepare_flash(b, flash, firmware=paths.FIRMWARE)
    ident = {"kid": KID.hex(), "key": KEY.hex(), "iv": IV.hex(), "seed": (b"s" * 32).hex()}
    if damaged:
        ident["key"] = "zz"
    (flash / "identity.json").write_text(json.dumps(ident))
    # The counter provisioning's self-test leaves (ceiling 0, CRC-guarded: docs/uplink.md).
    body = b"CTR1" + bytes(6)
    (flash / "counter").write_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    if policy is not None:
        (flash / "policy.json").write_bytes(policy)
    world = make_world(b, "smoke", 1, None)
    sent: list[bytes] = []
    emu = EmulatedBoard(
        b, flash, world=world, start_us=world.start_us, seed=1,
        on_frame=lambda f: sent.append(f) is None,
    )  # fmt: skip
    emu.run(duration_us=65 * MIN)  # past the hourly people window that opens at 08:00
    lines = [line for _, line in emu.lines]
    log = flash / "outbox.log"
    stored = parse_outbox(log.read_bytes()) if log.exists() else []
    return lines, _open(sent), _open(stored)


def _open(frames: list[bytes]) -> list[dict[int, object]]:
    out = []
    for f in frames:
        entry = rx.KeyEntry(KEY, IV)
        out.append(rx.parse_and_open(f, lambda kid, e=entry: e if kid == KID else None).record)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_a_board_whose_policy_does_not_load_says_nothing_about_people(
    case: str, tmp_path: Path
) -> None:
    policy, damaged, board, reason = CASES[case]
    flash = tmp_path / "flash"
    lines, sent, stored = _boot(board, flash, policy, damaged)
    people = [x for x in lines if PEOPLE_LINE.search(x)]
    assert people == [], people[:5]
    said = [x for x in lines if CLOSED in x]
    assert said == [reason + CLOSED], lines[:10]
    assert sum(x.startswith("rel health ") for x in lines) >= 4, "health keeps running"
    assert not any(x.startswith("rel ") and not x.startswith("rel health ") for x in lines)
    # Uplink and flash: every sealed record is health, naming no policy (00000000), and
    # reporting the policy fault (bit 6); the budget ledger was never written.
    if damaged:
        assert sent == [] and stored == [], "no key: nothing can be sealed"
    else:
        assert len(sent) >= 4
        for r in sent + stored:
            assert r[7] == 6 and r[2] == bytes(4), r
            assert not {6, 16, 17} & set(r), r
            assert r[25] & 64, "fault bit 6: the policy did not load"
    assert not (flash / "ledger.json").exists()
    blob = b"".join(p.read_bytes() for p in flash.rglob("*") if p.is_file() and p.suffix != ".mpy")
    assert not re.search(rb"door|distinct|motion", blob.replace(policy or b"", b""))


def test_the_same_scan_sees_people_on_a_board_whose_policy_loads(tmp_path: Path) -> None:
    lines, sent, _ = _boot("esp32-devkitc", tmp_path / "flash", _default, False)
    assert any(PEOPLE_LINE.search(x) for x in lines)
    assert {r[7] for r in sent} & set(PEOPLE_IDS)
    assert not any(CLOSED in x for x in lines)
