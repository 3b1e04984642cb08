"""The stream catalogue on the host: ``firmware/sensor/catalogue.py`` itself, and the device's
modules that read it (the policy validator, the config schema), loaded under CPython from the
firmware tree (they are written in the common subset). One vocabulary and one validator for
device and host; nothing here is a copy (docs/architecture.md, "One catalogue").

The firmware's ``sensor`` package is imported by path under its own name, so ``from sensor
import catalogue`` inside those files resolves to the same tree; if a ``sensor`` package is
already imported (the unit tests put ``firmware/`` on the path), it must be that tree. A
``micropython`` module with ``const`` is supplied when none is importable.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from . import paths
from .errors import UserError


def _package() -> ModuleType:
    root = paths.FIRMWARE / "sensor"
    if "micropython" not in sys.modules:
        # The firmware writes `from micropython import const`; under CPython const is the
        # identity (what MicroPython's own micropython.const does at run time).
        mp = ModuleType("micropython")
        mp.const = lambda x: x  # type: ignore[attr-defined]
        sys.modules["micropython"] = mp
    pkg = sys.modules.get("sensor")
    if pkg is None:
        spec = importlib.util.spec_from_file_location(
            "sensor", root / "__init__.py", submodule_search_locations=[str(root)]
        )
        if spec is None or spec.loader is None:  # pragma: no cover - the repository is broken
            raise UserError(f"cannot load the firmware package from {root}")
        pkg = importlib.util.module_from_spec(spec)
        sys.modules["sensor"] = pkg
        spec.loader.exec_module(pkg)
    where = [Path(p).resolve() for p in getattr(pkg, "__path__", [])]
    if root.resolve() not in where:  # pragma: no cover - another "sensor" package is loaded
        raise UserError(f"a 'sensor' package other than {root} is already imported")
    return pkg


@cache
def device_module(name: str) -> ModuleType:
    """``firmware/sensor/<name>.py`` as the module ``sensor.<name>``."""
    _package()
    return importlib.import_module(f"sensor.{name}")


def catalogue() -> Any:
    """The catalogue module (typed Any: it is MicroPython-subset code without annotations)."""
    return device_module("catalogue")


# ---- the catalogue's tables in host shapes (built from it, never written out here) ----


def names() -> tuple[str, ...]:
    """Stream names in the scheduler's order (health last)."""
    return tuple(catalogue().names())


def people() -> tuple[str, ...]:
    """The streams about people (k-suppressed and noised per person)."""
    return tuple(catalogue().people())


def sensed() -> tuple[str, ...]:
    """Streams that sense the world (all but health, which is about the sensor itself)."""
    c = catalogue()
    return tuple(s[c.S_NAME] for s in c.STREAMS if s[c.S_ON] is not None)


def releases(name: str) -> tuple[str, ...]:
    c = catalogue()
    return tuple(r[0] for r in c.stream(name)[c.S_RELEASES])


def record_streams() -> dict[int, str]:
    """Record stream id (key 7) -> its name."""
    return dict(catalogue().RECORDS)


def enum_names(key: int) -> dict[int, str]:
    """An enum or bits key's codes -> names (key 7, 16, 22, 25)."""
    table = catalogue().NAMES[key]
    if table and isinstance(table[0], tuple) and isinstance(table[0][0], int):
        return {int(k): str(v) for k, v in table}
    return {i: (v[0] if isinstance(v, tuple) else v) for i, v in enumerate(table)}


def record_keys(name: str) -> tuple[int, ...]:
    """The record keys a value stream releases (empty for a people stream)."""
    c = catalogue()
    out: list[int] = []
    for _, target in c.stream(name)[c.S_RELEASES]:
        if isinstance(target, tuple):
            out.extend(target)
    return tuple(out)
