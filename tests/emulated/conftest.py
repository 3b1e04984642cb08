from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PKG = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"

if shutil.which("node") is None or not (_PKG / "micropython.mjs").exists():
    pytest.skip(
        "MicroPython WebAssembly engine not installed: run make setup", allow_module_level=True
    )
