"""Where things live: the repository (firmware, boards, scenarios), Node, and the cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import UserError

# The host package is installed editable from the repository (make setup), so the firmware,
# board definitions and the emulator runtime are found next to it. ATSOURCE_ROOT overrides.
ROOT = Path(os.environ.get("ATSOURCE_ROOT", Path(__file__).resolve().parents[2]))
FIRMWARE = ROOT / "firmware"
BOARDS = ROOT / "boards"
EMULATOR = BOARDS / "emulator"
SCENARIOS = ROOT / "scenarios"

# Environment variables the command line reads as option defaults. Named here, in a module the
# CLI imports at start-up, so `atsource --help` need not import the modules that use them.
REGISTRY_ENV = "ATSOURCE_REGISTRY"
UF2_DIR_ENV = "ATSOURCE_UF2_DIR"


def cache_dir() -> Path:
    """Per-user cache: emulated flash images and compiled firmware (XDG_CACHE_HOME honoured)."""
    base = os.environ.get("ATSOURCE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "atsource"
    )
    return Path(base)


def node_binary() -> str:
    node = os.environ.get("ATSOURCE_NODE") or shutil.which("node")
    if not node:
        raise UserError("node not found: emulated boards need Node.js 18 or later (make setup)")
    return node


def check_engine() -> None:
    pkg = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
    if not (pkg / "micropython.mjs").exists():
        raise UserError(
            f"the MicroPython WebAssembly engine is not installed in {ROOT / 'node_modules'}: "
            "run `make setup` (npm ci)"
        )
