"""A provisioned board's flash written directly (no serial session): firmware, identity, the
counter provisioning's self-test leaves, the default policy and a config, for tests that need
a board in service from its first boot."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

from atsource import paths
from atsource import policy as host
from atsource.boards import Board
from atsource.emulator.api import prepare_flash


def provision_flash(
    board: Board, flash: Path, kid: bytes, key: bytes, iv: bytes, **config: Any
) -> None:
    prepare_flash(board, flash, firmware=paths.FIRMWARE)
    ident = {"kid": kid.hex(), "key": key.hex(), "iv": iv.hex(), "seed": (b"s" * 32).hex()}
    (flash / "identity.json").write_text(json.dumps(ident))
    # The counter provisioning's self-test leaves (ceiling 0, CRC-guarded: docs/uplink.md).
    body = b"CTR1" + bytes(6)
    (flash / "counter").write_bytes(body + zlib.crc32(body).to_bytes(4, "big"))
    (flash / "policy.json").write_bytes(host.canonical(host.load_policy(host.DEFAULT)))
    if config:
        cfg = json.loads((flash / "config.json").read_text())
        cfg.update(config)
        (flash / "config.json").write_text(json.dumps(cfg))
