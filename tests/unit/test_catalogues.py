"""Notices people can read: the text lives in catalogues (atsource/catalogues/*.toml), every
language has every string with the same placeholders, and each language renders HTML, SVG and
PNG with no English left over; the policy's notice fields (DPO, authority, rights,
installation date) are validated alike on host and device."""

from __future__ import annotations

import copy
import html.parser
import json
import re
from pathlib import Path
from typing import Any

import pytest
from atsource import catalogue, notice
from atsource import policy as host
from atsource.cli import main
from click.testing import CliRunner
from PIL import Image
from sensor import policy as dev

DEFAULT = host.load_policy(host.DEFAULT)
EN = catalogue.load("en")
OTHERS = [lang for lang in catalogue.languages() if lang != "en"]

# The default policy with every notice field, its own texts written in the reader's language
# (they come from the operator, not from the catalogue).
OWN_TEXTS = {
    "de": ("Öffentlichen Raum planen: wie warm und belebt die Straße ist.", "öffentliche Aufgabe"),
    "fr": ("Aménager l’espace public : chaleur et affluence de la rue.", "mission publique"),
    "es": ("Planificar el espacio público: calor y afluencia de la calle.", "misión pública"),
    "en": ("Plan public space: how warm and busy the street is.", "public task"),
}


def full_policy(lang: str) -> dict[str, Any]:
    p = copy.deepcopy(DEFAULT)
    p["purpose"], p["legal_basis"] = OWN_TEXTS[lang]
    p["name"] = "Plaza"
    p["operator"] = {"name": "Stadt Example", "contact": "privacy@example.org"}
    p["dpo"] = {"contact": "dpo@example.org", "name": "DPO"}
    p["authority"] = {"name": "LfDI Example", "url": "https://dpa.example.org/"}
    p["rights"] = ["access", "erasure", "object", "complaint"]
    p["installed"] = "2026-11-23"
    return p


def test_there_are_at_least_three_languages() -> None:
    assert "en" in catalogue.languages() and len(OTHERS) >= 2


@pytest.mark.parametrize("lang", OTHERS)
def test_no_string_is_missing_and_placeholders_match(lang: str) -> None:
    cat = catalogue.load(lang)
    assert set(cat.texts) == set(EN.texts), (
        f"missing: {sorted(set(EN.texts) - set(cat.texts))}, "
        f"extra: {sorted(set(cat.texts) - set(EN.texts))}"
    )
    for key, text in EN.texts.items():
        assert cat.texts[key].strip(), f"{lang}: {key} is empty"
        assert catalogue.placeholders(cat.texts[key]) == catalogue.placeholders(text), key
    # Translated, not copied: the sentences differ from English (names and units aside).
    same = [
        k for k, v in cat.texts.items() if v == EN.texts[k] and len(re.sub(r"\{\w+\}", "", v)) > 12
    ]
    assert same == [], same


class _Text(html.parser.HTMLParser):
    """The visible text of a page (no <pre>: the policy JSON; no <style>)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("pre", "style", "code", "svg"):
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("pre", "style", "code", "svg"):
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


ENGLISH = re.compile(r"\b(the|and|is|of|every|what|who|never|sensor sends)\b", re.IGNORECASE)


@pytest.mark.parametrize("lang", ["en", *OTHERS])
def test_each_language_renders_html_svg_and_png(lang: str, tmp_path: Path) -> None:
    t = catalogue.load(lang)
    pol = full_policy(lang)
    url = "https://sensors.example.org/sensors/dev-000007/"
    files = notice.render(
        pol, tmp_path, site="Plaza Süd", device="dev-000007", url=url, lang=lang, installed=None
    )
    page, svg, png = (f.read_text() if f.suffix != ".png" else "" for f in files)
    assert f'<html lang="{lang}">' in page
    for key in ("page.h1", "page.never", "rights.title", "page.streams", "optout.line"):
        assert t(key).replace("’", "&#x27;") in page.replace("’", "&#x27;"), key
    assert t("sign.dpo", contact="dpo@example.org") in page
    assert t("sign.installed", date="2026-11-23") in page
    assert t("sign.kicker") in svg and t("sign.scan_register") in svg
    sign_text = " ".join(
        s.text for s in notice.layout(pol, url=url, lang=lang).shapes if isinstance(s, notice.Text)
    )
    assert t("rights.title") in sign_text and t("sign.authority", name="LfDI Example") in sign_text
    with Image.open(files[2]) as im:
        assert im.size == (notice.W * notice.PNG_SCALE, notice.H * notice.PNG_SCALE)
    if lang != "en":
        # No English left: neither on the page nor on the sign (a string missed in the code
        # would show up here).
        p = _Text()
        p.feed(page)
        visible = " ".join(p.parts)
        assert ENGLISH.findall(visible) == [], visible
        assert ENGLISH.findall(sign_text.replace("atsource default street sensor", "")) == []


def test_the_default_notice_is_unchanged_in_english(tmp_path: Path) -> None:
    # The catalogue carries the words the code used to hold: the English sign says the same.
    sign = notice.layout(DEFAULT, site="plaza-north")
    texts = [s.text for s in sign.shapes if isinstance(s, notice.Text)]
    assert "It counts. It does not watch." in texts and "Scan for the full policy" in texts
    assert (
        notice.window_phrase(900) == "every 15 minutes"
        and notice.window_phrase(3600, "de") == "stündlich"
    )
    assert notice.retention_text(DEFAULT, "fr").startswith("Au plus 7 jours")


def test_cli_notice_in_german_and_an_unknown_language(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["notice", str(host.DEFAULT), "--out", str(tmp_path), "--lang", "de", "--json"]
    )
    assert r.exit_code == 0, r.output
    assert '<html lang="de">' in (tmp_path / "notice.html").read_text()
    assert len(json.loads(r.stdout)["files"]) == 3
    r = CliRunner().invoke(main, ["notice", str(host.DEFAULT), "--lang", "tlh"])
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "atsource: error: no notice text in language 'tlh' (available: de, en, es, fr)"
    ]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("dpo", "dpo@example.org", "dpo: must be an object"),
        ("dpo", {"name": "x"}, "dpo.contact: missing"),
        ("dpo", {"contact": "a", "phone": 1}, "dpo.phone: unknown key"),
        ("authority", {"name": "x", "url": "http://dpa"}, "authority.url: must be an https:// URL"),
        ("authority", {}, "authority.name: missing"),
        ("rights", [], "rights: must be a list of distinct rights from access, rectification"),
        ("rights", ["access", "access"], "rights: must be a list of distinct rights"),
        ("rights", ["be forgotten"], "rights: must be a list of distinct rights"),
        ("installed", "2026-02-30", "installed: must be a date YYYY-MM-DD"),
        ("installed", "23.11.2026", "installed: must be a date YYYY-MM-DD"),
        ("installed", "2026-1-5", "installed: must be a date YYYY-MM-DD"),
        ("installed", 20261123, "installed: must be a date YYYY-MM-DD"),
    ],
)
def test_notice_fields_are_validated_alike_on_host_and_device(
    field: str, value: Any, reason: str
) -> None:
    p = copy.deepcopy(DEFAULT)
    p[field] = value
    got = host.validate(p)
    assert len(got) == 1 and got[0].startswith(reason), got
    assert dev.reasons(p) == got


def test_notice_fields_are_optional_and_accepted(tmp_path: Path) -> None:
    p = full_policy("en")
    p["installed"] = "2028-02-29"  # a leap day
    assert host.validate(p) == [] and dev.reasons(p) == []
    f = tmp_path / "p.json"
    f.write_text(json.dumps(p))
    lines: list[str] = []
    assert dev.load(str(f), log=lines.append).hash == host.policy_hash(p)
