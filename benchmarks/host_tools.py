"""Host-tool benchmarks against emulated boards through their serial port (real mpremote
transport): deploy time (full firmware, then a no-op) and provisioning time (one device, and a
batch of 8 in parallel)."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from atsource import firmware_build
from atsource.boards import load_board
from atsource.deploy import deploy
from atsource.emulator.api import serve_board
from atsource.provision import provision, provision_batch
from atsource.registry import KEY_ENV, Registry

from benchmarks.timing import DEPLOY_NOOP_GOAL_S


def deploy_times() -> dict[str, Any]:
    """Full deploy of firmware/ to an empty emulated Pico W, then a deploy with no change."""
    board = load_board("pico-w")
    image = firmware_build.build(board)
    with tempfile.TemporaryDirectory() as tmp, serve_board("pico-w", Path(tmp)) as b:
        full = deploy(b.port, reset=False)
        noop = deploy(b.port, reset=False)
    return {
        "board": "pico-w",
        "files": len(image),
        "bytes": sum(len(d) for d in image.values()),
        "full_s": full.seconds,
        "full_copied": len(full.copied),
        "noop_s": noop.seconds,
        "noop_goal_s": DEPLOY_NOOP_GOAL_S,
        "noop_meets_goal": noop.seconds < DEPLOY_NOOP_GOAL_S,
        "noop_copied": len(noop.copied),
        "note": "emulated board: plain raw REPL (no raw-paste), written without a UART's pacing",
    }


def provision_times() -> dict[str, Any]:
    """Provisioning one deployed board, and a batch of 8 boards in parallel."""
    old = os.environ.pop(KEY_ENV, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            with ExitStack() as stack:
                boards = [
                    stack.enter_context(
                        serve_board(
                            "pico-w" if i % 2 else "esp32-devkitc",
                            root / f"flash{i}",
                            instance=f"bench{i}",
                        )
                    )
                    for i in range(9)
                ]
                threads = [
                    threading.Thread(target=deploy, args=(b.port,), kwargs={"reset": False})
                    for b in boards
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                reg = Registry.open(root / "registry.db")
                t0 = time.perf_counter()
                provision(boards[0].port, "bench", registry=reg)
                one = time.perf_counter() - t0
                t0 = time.perf_counter()
                items = provision_batch([b.port for b in boards[1:]], "bench", registry=reg)
                batch = time.perf_counter() - t0
                ok = sum(1 for i in items if i.result)
                reg.close()
    finally:
        if old is not None:
            os.environ[KEY_ENV] = old
    return {
        "one_device_s": round(one, 3),
        "batch_of_8_s": round(batch, 3),
        "batch_ok": ok,
        "batch_per_device_s": round(batch / 8, 3),
    }


if __name__ == "__main__":
    import json

    print(json.dumps({"deploy": deploy_times(), "provision": provision_times()}, indent=2))
