"""Text catalogues for what people read (the notice): one TOML file per language in
``catalogues/``, the same keys in each (tests check none is missing). Adding a language is
adding a file; adding a sentence is adding a key to every file. Code names keys, never words.
"""

from __future__ import annotations

import string
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from .errors import UserError

DIR = Path(__file__).with_name("catalogues")
DEFAULT = "en"


def languages() -> list[str]:
    return sorted(p.stem for p in DIR.glob("*.toml"))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


def placeholders(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


class Catalogue:
    """``t("sign.headline")``, ``t("retention.device", n=7)`` (plural: ``_one``/``_other``)."""

    def __init__(self, lang: str, texts: dict[str, str]) -> None:
        self.lang = lang
        self.texts = texts

    def __call__(self, key: str, **values: Any) -> str:
        if "n" in values and f"{key}_one" in self.texts:
            key = f"{key}_{self.plural(int(values['n']))}"
        try:
            text = self.texts[key]
        except KeyError:
            raise KeyError(f"catalogue {self.lang}: no text for {key}") from None
        return text.format(**values) if values else text

    def plural(self, n: int) -> str:
        # French counts 0 and 1 as singular; English, German and Spanish only 1.
        if self.lang == "fr":
            return "one" if n in (0, 1) else "other"
        return "one" if n == 1 else "other"

    def number(self, text: str) -> str:
        """A decimal number written the language's way (0.5 -> 0,5)."""
        return text.replace(".", self.texts["meta.decimal"])


@cache
def load(lang: str = DEFAULT) -> Catalogue:
    path = DIR / f"{lang}.toml"
    if not path.is_file():
        raise UserError(
            f"no notice text in language '{lang}' (available: {', '.join(languages())})"
        )
    with path.open("rb") as f:
        return Catalogue(lang, _flatten(tomllib.load(f)))
