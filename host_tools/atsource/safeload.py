"""Reading the JSON and TOML files users hand the tools, so that no file can crash them.

Every policy, config, scenario and board-side manifest goes through here. A hostile or broken
file is a user mistake: one ``UserError`` line naming the file and the problem, never a
``RecursionError`` (nesting 100,000 deep), a ``ValueError`` (a 5,000-digit integer), a memory
blow-up (a 2 GB file) or a later ``UnicodeEncodeError`` (a lone surrogate such as ``"\\ud800"``,
which JSON escapes can produce but no UTF-8 file, HTML page or database can hold).

Limits (generous for every file the project ships; the largest policy is ~1.5 KB, the largest
scenario ~4 KB): ``MAX_DEPTH`` levels of nesting, integers within signed 64 bits (what SQLite,
CBOR on the device and MicroPython's small ints all hold), a byte size per kind of file, finite
floats, strings of Unicode scalar values. A UTF-8 byte order mark at the start is ignored.
"""

from __future__ import annotations

import codecs
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import UserError

MAX_DEPTH = 32
MAX_BYTES = 1 << 20  # default size limit of a file (1 MiB)
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1
_INT_DIGITS = 19  # every int64 has at most 19 digits


def read_text(path: Path | str, what: str, limit: int = MAX_BYTES) -> str:
    """The text of a UTF-8 file of at most ``limit`` bytes (a leading BOM dropped)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise UserError(f"{p}: no such {what} file") from None
    except IsADirectoryError:
        raise UserError(f"{p}: is a directory, not a {what} file") from None
    except OSError as e:
        raise UserError(f"{p}: cannot read {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise UserError(f"{p}: larger than {limit} bytes: too large for a {what} file")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > _INT_DIGITS:
        raise UserError(f"an integer of {len(text.lstrip('-'))} digits (at most {_INT_DIGITS})")
    return int(text)


def _reject_constant(name: str) -> Any:
    raise UserError(f"{name} is not allowed")


def parse_json(
    text: str,
    name: str,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """JSON text to a value within the limits; ``name`` (usually the path) prefixes errors.
    NaN and Infinity are refused; ``object_pairs_hook`` may raise UserError itself."""
    try:
        obj = json.loads(
            text,
            parse_int=_parse_int,
            parse_constant=_reject_constant,
            object_pairs_hook=object_pairs_hook,
        )
    except RecursionError:
        raise UserError(f"{name}: nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{name}: not JSON: {e}") from None
    except UserError as e:
        raise UserError(f"{name}: {e}") from None
    check_tree(obj, name, max_depth)
    return obj


def load_json(
    path: Path | str,
    what: str,
    *,
    limit: int = MAX_BYTES,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
) -> Any:
    """A JSON file read and parsed within the limits (see parse_json)."""
    return parse_json(read_text(path, what, limit), str(path), object_pairs_hook=object_pairs_hook)


def parse_toml(text: str, name: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """TOML text to a table within the limits; ``name`` prefixes errors."""
    import tomllib

    try:
        obj = tomllib.loads(text)
    except RecursionError:
        raise UserError(f"{name}: nested deeper than {max_depth} levels") from None
    except ValueError as e:  # TOMLDecodeError, or int() refusing thousands of digits
        if "integer string conversion" in str(e):
            raise UserError(f"{name}: an integer of too many digits") from None
        raise UserError(f"{name}: invalid TOML: {e}") from None
    check_tree(obj, name, max_depth, finite=False)  # the scenario checks its own floats
    return obj


def _where(name: str, path: str) -> str:
    return f"{name}: {path}" if path else name


def check_tree(obj: Any, name: str, max_depth: int = MAX_DEPTH, *, finite: bool = True) -> None:
    """Refuse, with the path of the first offender: nesting deeper than ``max_depth``,
    integers outside signed 64 bits, non-finite floats (if ``finite``), strings (values or
    keys) that are not valid Unicode (lone surrogates). Iterative: no depth makes it recurse."""
    stack: list[tuple[Any, int, str]] = [(obj, 0, "")]
    while stack:
        v, depth, path = stack.pop()
        if isinstance(v, dict | list):
            if depth >= max_depth:
                raise UserError(f"{_where(name, path)}: nested deeper than {max_depth} levels")
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str):
                    _check_str(k, name, path)
                    sub = f"{path}.{k}" if path else k
                else:
                    sub = f"{path}[{k}]"
                stack.append((x, depth + 1, sub))
        elif isinstance(v, str):
            _check_str(v, name, path)
        elif isinstance(v, bool):
            continue
        elif isinstance(v, int):
            if not INT_MIN <= v <= INT_MAX:
                raise UserError(f"{_where(name, path)}: integer out of range (64 bits)")
        elif finite and isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{_where(name, path)}: not a finite number")


def _check_str(s: str, name: str, path: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        bad = ord(s[e.start])
        raise UserError(
            f"{_where(name, path)}: not valid Unicode text (lone surrogate \\u{bad:04x})"
        ) from None
