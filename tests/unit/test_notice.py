"""The citizen-facing notice: files written, HTML self-contained, PNG and SVG carry the very QR
matrix and the policy hash, texts follow the policy; `atsource notice` on files and devices."""

from __future__ import annotations

import copy
import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import qrcode
import qrcode.constants
from atsource import notice
from atsource import policy as pol
from atsource.cli import main
from click.testing import CliRunner
from PIL import Image

DEFAULT = pol.load_policy(pol.DEFAULT)
STRICT = pol.load_policy(pol.POLICIES / "strict.json")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], notice.Sign]:
    out = tmp_path_factory.mktemp("notice")
    files = notice.render(DEFAULT, out, site="plaza-north", device="dev-000007")
    return files, notice.layout(DEFAULT, site="plaza-north", device="dev-000007")


def _sign_texts(sign: notice.Sign) -> str:
    """Every text on the sign, lines joined by a space (no-break spaces kept)."""
    return " ".join(s.text for s in sign.shapes if isinstance(s, notice.Text))


def test_three_files_are_written(rendered: tuple[list[Path], notice.Sign]) -> None:
    files, _ = rendered
    assert [f.name for f in files] == ["notice.html", "notice.svg", "notice.png"]
    assert all(f.stat().st_size > 1000 for f in files)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") and value:
                self.refs.append((tag, name, value))


def test_html_is_self_contained(rendered: tuple[list[Path], notice.Sign]) -> None:
    files, _ = rendered
    text = files[0].read_text(encoding="utf-8")
    p = _Refs()
    p.feed(text)
    # Nothing is fetched: no src anywhere, no stylesheet link, no script, no CSS url() or import.
    assert not [r for r in p.refs if r[1] != "href"]
    assert "link" not in p.tags and "script" not in p.tags and "img" not in p.tags
    assert "url(" not in text and "@import" not in text
    # Links a reader may follow: only the full policy and the operator's page.
    allowed = {DEFAULT["policy_url"], DEFAULT["operator"]["url"]}
    assert {v for _, _, v in p.refs if v.startswith(("http:", "https:", "//"))} == allowed
    # The sign is inline, and the page states the full hash.
    assert "<svg" in text and pol.policy_hash(DEFAULT).hex() in text
    assert "This sensor counts. It does not watch." in text
    # The per-person guarantee, in words, with the assumptions it rests on.
    assert html.escape(notice.person_text(DEFAULT)) in text
    assert "One person&#x27;s presence changes what is published by at most ε = 2.4 a day" in text


def test_svg_is_well_formed_and_names_the_hash(rendered: tuple[list[Path], notice.Sign]) -> None:
    files, _ = rendered
    root = ET.parse(files[1]).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    digest = pol.policy_hash(DEFAULT)
    assert notice.hash_id(digest) in texts and digest.hex() in texts
    assert "href" not in files[1].read_text()


def test_png_is_an_a4_print_image(rendered: tuple[list[Path], notice.Sign]) -> None:
    files, _ = rendered
    with Image.open(files[2]) as im:
        im.verify()
    with Image.open(files[2]) as im:
        assert im.format == "PNG" and im.size == (2480, 3508)
        assert round(im.info["dpi"][0]) == 300
        # Not blank: the header band is dark, the paper white.
        rgb = im.convert("RGB")
        assert rgb.getpixel((10, 10)) == (0x0B, 0x4F, 0x6C)
        assert rgb.getpixel((1240, 1200)) == (255, 255, 255)


def _expected_qr(url: str) -> list[list[bool]]:
    # Computed here from qrcode itself, independently of the module under test.
    q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    q.add_data(url)
    q.make(fit=True)
    return [[bool(x) for x in row] for row in q.get_matrix()]


def _dark(im: Image.Image, x: float, y: float) -> bool:
    px = im.getpixel((round(x), round(y)))
    assert isinstance(px, int)
    return px < 128


def test_png_carries_the_qr_code_of_the_policy_url(
    rendered: tuple[list[Path], notice.Sign],
) -> None:
    files, sign = rendered
    want = _expected_qr(DEFAULT["policy_url"])
    assert sign.qr_size == len(want) and sign.qr_module >= 5
    scale = notice.PNG_SCALE
    x0, y0 = sign.qr_origin
    with Image.open(files[2]) as im:
        grey = im.convert("L")
        got = [
            [
                _dark(
                    grey,
                    (x0 + (i + 0.5) * sign.qr_module) * scale,
                    (y0 + (j + 0.5) * sign.qr_module) * scale,
                )
                for i in range(len(want))
            ]
            for j in range(len(want))
        ]
    assert got == want
    # A module is at least 0.5 mm printed (150 sign units per inch), big enough for phones.
    assert sign.qr_module / 150 * 25.4 >= 0.5


def test_svg_carries_the_same_qr_modules(rendered: tuple[list[Path], notice.Sign]) -> None:
    files, sign = rendered
    want = _expected_qr(DEFAULT["policy_url"])
    n, mod = len(want), sign.qr_module
    x0, y0 = sign.qr_origin
    dark = [[False] * n for _ in range(n)]
    for m in re.finditer(
        r'<polygon points="([^"]+)" fill="#1d2b36" shape-rendering', files[1].read_text()
    ):
        pts = [tuple(float(v) for v in p.split(",")) for p in m.group(1).split()]
        (xa, ya), (xb, _), _, _ = pts
        j = round((ya - y0) / mod)
        for i in range(round((xa - x0) / mod), round((xb - x0) / mod)):
            dark[j][i] = True
    assert dark == want


def test_sign_says_what_the_policy_says(rendered: tuple[list[Path], notice.Sign]) -> None:
    _, sign = rendered
    t = _sign_texts(sign)
    digest = pol.policy_hash(DEFAULT)
    assert "It counts. It does not watch." in t
    assert notice.hash_id(digest) in t and digest.hex() in t
    flat = t
    for label in ("Temperature & humidity", "People at the door", "Movement", "Phones nearby"):
        assert label in flat
    assert "A blurred total under 10 is sent as “fewer than 10”" in flat
    assert "You change these totals by at most ε\u00a0=\u00a02.4 a day, all together" in flat
    assert "0.1\u00a0°C" in flat and "no camera and no microphone" in flat
    assert "_optout" in flat and "thrown away every hour" in flat
    assert "City of Example, Urban Data Office" in flat and "privacy@example.org" in flat
    assert "At most 7 days on the sensor" in flat and "Kept 365 days" in flat
    assert "plaza-north" in flat and "dev-000007" in flat
    assert DEFAULT["policy_url"] in flat


def test_strict_policy_sign_drops_what_is_not_collected(tmp_path: Path) -> None:
    t = _sign_texts(notice.layout(STRICT))
    assert "Phones nearby" not in t and "Movement" not in t and "_optout" not in t
    assert "No phone counting." in t
    assert "A blurred total under 20 is sent as “fewer than 20”" in t
    assert "at most ε\u00a0=\u00a01.2 a day" in t
    assert "0.5\u00a0°C, 5\u00a0% and 100\u00a0Pa" in t
    assert "Kept 90 days" in t


def test_shapes_stay_on_the_sign_even_with_the_longest_texts() -> None:
    p = copy.deepcopy(DEFAULT)
    p["name"] = "N" * 100
    p["purpose"] = ("A long purpose " * 40)[:500]
    p["legal_basis"] = "b" * 100
    p["operator"] = {"name": "O" * 100, "contact": "c" * 200, "url": "https://" + "u" * 192}
    p["policy_url"] = "https://example.org/" + "p" * 180
    assert pol.validate(p) == []
    sign = notice.layout(p, site="s" * 80, device="dev-000007")
    for s in sign.shapes:
        if isinstance(s, notice.Text):
            w = notice.text_width(s.text, s.size, s.bold, s.mono)
            x0 = s.x - (w / 2 if s.anchor == "middle" else 0)
            assert x0 >= 0 and x0 + w <= notice.W + 0.5, s
            assert 0 < s.y <= notice.H, s


def test_window_phrases() -> None:
    assert [notice.window_phrase(s) for s in (60, 900, 3600, 7200, 86400)] == [
        "every minute",
        "every 15 minutes",
        "every hour",
        "every 2 hours",
        "every day",
    ]


# ---- the command ----


def test_cli_notice_for_a_policy_file(tmp_path: Path) -> None:
    out = tmp_path / "n"
    r = CliRunner().invoke(
        main, ["notice", str(pol.DEFAULT), "--out", str(out), "--site", "plaza", "--json"]
    )
    assert r.exit_code == 0, r.output
    got = json.loads(r.output)
    assert got["hash"] == pol.policy_hash(DEFAULT).hex() and got["site"] == "plaza"
    assert got["device"] is None
    assert sorted(Path(f).name for f in got["files"]) == ["notice.html", "notice.png", "notice.svg"]
    assert all(Path(f).exists() for f in got["files"])


def test_cli_notice_refuses_a_bad_policy_with_the_reason(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    p: dict[str, Any] = copy.deepcopy(DEFAULT)
    p["streams"]["doorway"]["k"] = 1
    bad.write_text(json.dumps(p))
    r = CliRunner().invoke(main, ["notice", str(bad), "--out", str(tmp_path / "n")])
    assert r.exit_code == 2
    assert f"{bad}: streams.doorway.k: must be an integer from 2 to 1000" in r.output
    assert not (tmp_path / "n").exists()


def test_cli_notice_for_a_registered_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atsource.registry import Registry

    monkeypatch.delenv("ATSOURCE_REGISTRY_KEY", raising=False)
    db = tmp_path / "registry.db"
    with Registry.open(db) as reg:
        row, kid = reg.begin_device(
            "b" * 64, "pico-w", "plaza-north", pol.policy_hash(STRICT)[:4].hex()
        )
        other, _ = reg.begin_device("c" * 64, "pico-w", "elsewhere", "00000000")
    for ref in (str(row.number), row.name, kid.hex()):
        out = tmp_path / ref
        r = CliRunner().invoke(
            main, ["notice", ref, "--registry", str(db), "--out", str(out), "--json"]
        )
        assert r.exit_code == 0, r.output
        got = json.loads(r.output)
        assert got["policy"].endswith("strict.json") and got["site"] == "plaza-north"
        assert got["device"] == row.name and (out / "notice.png").exists()
    # A policy the shipped files do not hold must be given; a wrong one is refused.
    r = CliRunner().invoke(main, ["notice", str(other.number), "--registry", str(db)])
    assert r.exit_code == 2 and "runs policy 00000000" in r.output and "--policy" in r.output
    r = CliRunner().invoke(
        main, ["notice", str(other.number), "--registry", str(db), "--policy", str(pol.DEFAULT)]
    )
    assert r.exit_code == 2 and "the device runs 00000000" in r.output
    r = CliRunner().invoke(main, ["notice", "99", "--registry", str(db)])
    assert r.exit_code == 2 and "no device 99" in r.output
    r = CliRunner().invoke(main, ["notice", "7", "--registry", str(tmp_path / "none.db")])
    assert r.exit_code == 2 and "no registry" in r.output and not (tmp_path / "none.db").exists()
    r = CliRunner().invoke(main, ["notice", "not-a-thing"])
    assert r.exit_code == 2 and "neither a policy file nor a device" in r.output


def test_a_sign_with_noise_and_air_says_loudness_never_sound(tmp_path: Path) -> None:
    p = copy.deepcopy(DEFAULT)
    p["streams"]["noise"] = {"window_s": 900, "release": ["laeq", "lamin", "lamax"]}
    p["streams"]["air"] = {"window_s": 3600, "release": ["mean", "max", "samples"]}
    assert pol.validate(p) == []
    t = _sign_texts(notice.layout(p))
    assert "It measures loudness, it never records sound." in t and "No microphone" not in t
    assert "the microphone measures loudness only" in t and "Loudness" in t
    assert "Fine dust" in t and "fine dust in the air (PM1, PM2.5, PM10" in t
    page = notice.to_html(p, notice.layout(p))
    assert "Loudness (sound level meter, A-weighted)" in page and "laeq, lamin, lamax" in page
    for lang in ("de", "fr", "es"):  # every language has the words
        assert notice.layout(p, lang=lang).shapes
