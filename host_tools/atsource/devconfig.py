"""The device's config schema on the host: ``firmware/sensor/config.py`` itself, loaded under
CPython (it is written in the common subset), so the host refuses exactly what the device would
ignore, with the same reasons. One table, one validator, no copy kept in step by hand."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import UserError


def device_module() -> ModuleType:
    """firmware/sensor/config.py as a module (it imports ``json`` and the stream catalogue)."""
    from . import streams

    return streams.device_module("config")


def problems(obj: Any) -> list[str]:
    """Every reason the device would ignore a setting of ``obj`` (empty: the config is good)."""
    return list(device_module().check(obj)[1])


def effective(obj: Any) -> dict[str, Any]:
    """The configuration the device would run with."""
    return dict(device_module().check(obj)[0])


def require_valid(obj: Any, where: Path | str) -> None:
    """Refuse a config with any problem: one line per problem, exit 2."""
    found = problems(obj)
    if found:
        raise UserError("\n".join(f"{where}: {p}" for p in found))
