"""CPython stand-in for the parts of MicroPython's ``micropython`` module the firmware uses."""

from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T")


def const(value: _T) -> _T:
    return value


def native(f: _T) -> _T:
    return f


def viper(f: _T) -> _T:
    return f
