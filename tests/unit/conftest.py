"""Unit tests run the firmware's pure-logic modules under CPython.

``tests/support`` supplies CPython stand-ins for MicroPython-only modules (``micropython``,
``cryptolib``); ``firmware/`` is put on the path so tests import the deployed package
(``sensor``) exactly as the board does.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

for _p in (ROOT / "tests" / "support", ROOT / "firmware"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
