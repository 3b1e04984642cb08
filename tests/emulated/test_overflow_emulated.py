"""Overflow accounting that survives the overflow (issue 15): the provisioned firmware, an
outbox of 50 frames and a 30-hour outage on both emulated boards. Most health records are shed
with the rest, yet the first one that arrives afterwards tells exactly how many frames were
lost: key 27 is the persisted, monotonic total, not a count since the last health record."""

from __future__ import annotations

import binascii
import json
from pathlib import Path

from atsource import frame as rx
from atsource import keys, paths
from atsource import policy as host_policy
from atsource.boards import load_board
from atsource.emulator.api import prepare_flash
from atsource.emulator.engine import EmulatedBoard
from worlds import ScriptedWorld

START = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z
HOUR = 3600 * 1_000_000
KID = keys.make_kid(0x51, 1)
KEY, IV = keys.derive(bytes(range(32, 48)), KID)
S_HEALTH = 6


def test_dropped_total_survives_a_30_hour_outage(board_name: str, flash: Path) -> None:
    prepare_flash(load_board(board_name), flash, firmware=paths.FIRMWARE)
    ident = {"v": 1, "kid": KID.hex(), "key": KEY.hex(), "iv": IV.hex(), "seed": "ab" * 32}
    (flash / "identity.json").write_text(json.dumps(ident))
    cfg = {"v": 1, "device": 0x51, "wifi": {"ssid": "atsource-emulated", "key": ""}}
    cfg["outbox_frames"] = 50
    (flash / "config.json").write_text(json.dumps(cfg))
    # The counter file provisioning's self-test frame leaves: ceiling 0 (docs/uplink.md).
    ctr = b"CTR1" + (0).to_bytes(6, "big")
    (flash / "counter").write_bytes(ctr + binascii.crc32(ctr).to_bytes(4, "big"))
    pol = host_policy.load_policy(host_policy.DEFAULT)
    (flash / "policy.json").write_bytes(host_policy.canonical(pol))

    down, back = START + 1 * HOUR, START + 31 * HOUR
    world = ScriptedWorld(START, [("net", down, 0), ("net", back, 1)])
    got: list[bytes] = []
    emu = EmulatedBoard(
        board_name,
        flash,
        world=world,
        start_us=START,
        seed=1,
        entry="sensor.app",
        on_frame=lambda f: got.append(f) is None,
    )
    emu.run(duration_us=32 * HOUR)
    lines = [line for _, line in emu.lines]
    assert not any("Traceback" in line for line in lines), "\n".join(lines[-20:])

    entry = rx.KeyEntry(KEY, IV)
    opened = [rx.parse_and_open(f, lambda k: entry if k == KID else None) for f in got]
    pivs = [o.piv for o in opened]
    assert pivs == sorted(set(pivs))  # in order, once each
    missing = (pivs[-1] + 1) - len(pivs)  # counter values sealed but never delivered
    assert missing > 200  # a 30-hour outage through an outbox of 50 frames

    health = [o.record for o in opened if o.record[7] == S_HEALTH]
    windows = {r[0] for r in health}
    shed = 32 * 4 - len(windows)
    assert shed > 60  # most health records of the outage were themselves dropped
    # The first health record after the outage already tells the whole loss; every later one
    # carries the same total (nothing more was lost once the network was back).
    totals = [r[27] for r in health]
    assert totals == sorted(totals)  # monotonic
    after = [r for r in health if r[0] * 1_000_000 >= back]
    assert after and all(r[27] == missing for r in after), (missing, [r[27] for r in after])
