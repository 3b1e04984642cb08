"""The citizen-facing notice for a policy: a sign (SVG and PNG) and a self-contained HTML page.

The sign follows the spirit of DTPR signage: hexagons for what is sensed, what leaves the sensor,
what never does, why, who is accountable and for how long, a QR code to the full policy and the
policy hash. It is laid out once as a list of shapes in sign units (A4 at 150 dpi) and drawn by
two small back ends, Pillow for the PNG and hand-written SVG, so both show the same thing.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
import qrcode
import qrcode.constants
from PIL import Image, ImageDraw, ImageFont

from . import streams
from .catalogue import DEFAULT as DEFAULT_LANG
from .catalogue import load as load_catalogue
from .errors import UserError
from .policy import DAY_S, canonical, daily_per_person, person_bound, policy_hash

W, H = 1240, 1754  # A4 portrait at 150 dpi
PNG_SCALE = 2  # the PNG is drawn at 300 dpi, for print
MARGIN = 60
NBSP = "\u00a0"

INK = "#1d2b36"
MUTED = "#52606d"
PAPER = "#ffffff"
BAND = "#0b4f6c"
SENSE = "#f2a900"
LEAVES = "#2e7d32"
NEVER = "#c62828"
INFO = "#1565c0"
LIGHT = "#eef3f6"

FONT_FAMILY = "DejaVu Sans, Verdana, Arial, sans-serif"
MONO_FAMILY = "DejaVu Sans Mono, Menlo, Consolas, monospace"

Point = tuple[float, float]


# ---- the words: what the policy means for a passer-by ----


def window_phrase(seconds: int, lang: str = DEFAULT_LANG) -> str:
    """900 -> 'every 15 minutes', 3600 -> 'every hour' (in the notice's language)."""
    t = load_catalogue(lang)
    if seconds % 3600 == 0:
        h = seconds // 3600
        if h == 1:
            return t("when.every_hour")
        return t("when.every_day") if h == 24 else t("when.every_hours", n=h)
    m = seconds // 60
    return t("when.every_minute") if m == 1 else t("when.every_minutes", n=m)


def _upper_first(text: str) -> str:
    # Not str.capitalize(): that would lower-case German nouns.
    return text[:1].upper() + text[1:]


def _centi(v: int, lang: str = DEFAULT_LANG) -> str:
    text = f"{v // 100}" if v % 100 == 0 else f"{v / 100:g}"
    return load_catalogue(lang).number(text)


def _join(words: list[str], lang: str = DEFAULT_LANG) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + f" {load_catalogue(lang)('when.and')} " + words[-1]


def person_text(policy: dict[str, Any], lang: str = DEFAULT_LANG) -> str:
    """The per-person guarantee in plain words, in the notice's language (also what
    `atsource policy check` prints)."""
    t = load_catalogue(lang)
    st = policy["streams"]
    day = t.number(f"{daily_per_person(policy) / 1000:g}")
    people = [n for n in streams.people() if n in st]
    windows = {int(st[n]["window_s"]) for n in people}
    if len(windows) == 1:
        total = sum(int(st[n]["noise"]["epsilon_milli"]) for n in people) / 1000
        text = t(
            "person.lead_window",
            epsilon=day,
            window_epsilon=t.number(f"{total:g}"),
            when=window_phrase(windows.pop(), lang),
        )
    else:
        text = t("person.lead", epsilon=day)
    assume = []
    if "doorway" in st:
        s = st["doorway"]
        when = window_phrase(int(s["window_s"]), lang)
        assume.append(t("person.door", n=s["crossings_per_person"], when=when))
    if "motion" in st:
        s = st["motion"]
        when = window_phrase(int(s["window_s"]), lang)
        assume.append(t("person.motion", n=s["events_per_person"], when=when))
    if "ble" in st:
        r = int(st["ble"]["rotation_s"])
        minutes = t.number(f"{r / 60:g}")
        assume.append(t("person.ble", minutes=minutes))
    if assume:
        text += " " + t("person.assume", what=_join(assume, lang))
    return text


def sensed(policy: dict[str, Any]) -> list[str]:
    """The collected streams that sense something (health is about the sensor itself)."""
    return [k for k in streams.sensed() if k in policy["streams"]]


def leaves_list(policy: dict[str, Any], lang: str = DEFAULT_LANG) -> list[str]:
    """What leaves the sensor, one sentence per group of streams released alike."""
    t = load_catalogue(lang)
    st: dict[str, Any] = policy["streams"]
    out: list[str] = []
    if "env" in st:
        s = st["env"]
        r = s["resolution"]
        what = [t(f"leaves.{x}") for x in ("mean", "min", "max") if x in s["release"]]
        when = _upper_first(window_phrase(s["window_s"], lang))
        if what:
            out.append(
                t(
                    "leaves.env",
                    when=when,
                    what=_join(what, lang),
                    temp=_centi(r["temp_centi"], lang),
                    rh=_centi(r["rh_centi"], lang),
                    pressure=r["pressure_pa"],
                )
                .replace(" °C", f"{NBSP}°C")
                .replace(" %", f"{NBSP}%")
                .replace(" Pa", f"{NBSP}Pa")
            )
        else:
            out.append(t("leaves.env_samples", when=when))
    # People streams with the same window and k read as one sentence.
    groups: dict[tuple[int, int], list[str]] = {}
    for key in streams.people():
        s = st.get(key)
        if s is None:
            continue
        if key == "doorway":
            dirs = [d for d in ("in", "out") if d in s["release"]]
            noun = t("leaves.people_" + "_".join(dirs))
        else:
            noun = t(f"leaves.{key}")
        groups.setdefault((s["window_s"], s["k"]), []).append(noun)
    for (window, k), nouns in groups.items():
        when = _upper_first(window_phrase(window, lang))
        out.append(t("leaves.people", when=when, what=_join(nouns, lang), k=k))
    if groups:
        day = t.number(f"{daily_per_person(policy) / 1000:g}")
        # "ε = 2.4" stays on one line of the sign.
        out.append(t("leaves.person_total", epsilon=day).replace("ε = ", f"ε{NBSP}={NBSP}"))
    for key in ("noise", "air"):
        if key in st:
            out.append(
                t(f"leaves.{key}", when=_upper_first(window_phrase(st[key]["window_s"], lang)))
            )
    if "health" in st:
        out.append(t("leaves.health"))
    return out


def never_list(policy: dict[str, Any], lang: str = DEFAULT_LANG) -> list[str]:
    t = load_catalogue(lang)
    st: dict[str, Any] = policy["streams"]
    out = [t("never.images_loudness" if "noise" in st else "never.images")]
    if "ble" in st:
        every = window_phrase(st["ble"]["window_s"], lang)
        out.append(t("never.addresses", every=every))
        out.append(t("never.tracking", every=every))
    out.append(t("never.who"))
    return out


def optout_line(policy: dict[str, Any], lang: str = DEFAULT_LANG) -> str | None:
    if "ble" not in policy["streams"]:
        return None
    return load_catalogue(lang)("optout.line")


def retention_text(policy: dict[str, Any], lang: str = DEFAULT_LANG) -> str:
    t = load_catalogue(lang)
    r = policy["retention"]
    return (
        t("retention.device", n=r["device_days"])
        + " "
        + t("retention.operator", n=r["receiver_days"])
    )


def rights_text(policy: dict[str, Any], lang: str = DEFAULT_LANG) -> str | None:
    """The rights the policy names, in one sentence (policy field ``rights``)."""
    rights = policy.get("rights")
    if not rights:
        return None
    t = load_catalogue(lang)
    return f"{t('rights.intro')} {_join([t(f'rights.{r}') for r in rights], lang)}. " + t(
        "rights.none_held"
    )


def installed_text(
    policy: dict[str, Any], installed: str | None, lang: str = DEFAULT_LANG
) -> str | None:
    date = installed or policy.get("installed")
    return load_catalogue(lang)("sign.installed", date=date) if date else None


def hash_id(digest: bytes) -> str:
    """The 4 bytes every record carries, as '1a2b 3c4d'."""
    h = digest[:4].hex()
    return f"{h[:4]} {h[4:]}"


def qr_matrix(url: str) -> list[list[bool]]:
    """The QR code for url, quiet zone included (4 modules), as qrcode computes it."""
    q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    q.add_data(url)
    q.make(fit=True)
    return [[bool(x) for x in row] for row in q.get_matrix()]


# ---- the sign as shapes ----


@dataclass(frozen=True)
class Poly:
    points: list[Point]
    fill: str | None = None
    stroke: str | None = None
    width: float = 0
    closed: bool = True
    crisp: bool = False  # no anti-aliasing seams between QR modules in SVG viewers


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float
    fill: str | None = None
    stroke: str | None = None
    width: float = 0


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    text: str
    size: float
    fill: str = INK
    bold: bool = False
    mono: bool = False
    anchor: str = "start"  # or "middle", "end"


Shape = Poly | Circle | Text


@dataclass
class Sign:
    width: int = W
    height: int = H
    shapes: list[Shape] = field(default_factory=list)
    qr_origin: Point = (0.0, 0.0)  # top-left of the QR matrix (quiet zone included)
    qr_module: float = 0.0
    qr_size: int = 0  # modules per side, quiet zone included


@cache
def _font(size: int, bold: bool = False, mono: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSansMono" if mono else "DejaVuSans"
    if bold:
        name += "-Bold"
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{name}.ttf"
    return ImageFont.truetype(str(path), size)


def text_width(text: str, size: float, bold: bool = False, mono: bool = False) -> float:
    return float(_font(round(size * 4), bold, mono).getlength(text)) / 4


def _pieces(word: str, size: float, width: float, bold: bool) -> list[str]:
    # A word wider than the line (a long URL or address) is broken between characters.
    if text_width(word, size, bold) <= width:
        return [word]
    out = [""]
    for ch in word:
        if out[-1] and text_width(out[-1] + ch, size, bold) > width:
            out.append("")
        out[-1] += ch
    return out


def wrap(text: str, size: float, width: float, bold: bool = False) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split(" "):  # not split(): NBSP keeps a number with its unit
        for piece in _pieces(word, size, width, bold):
            trial = f"{line} {piece}" if line else piece
            if line and text_width(trial, size, bold) > width:
                lines.append(line)
                line = piece
            else:
                line = trial
    if line:
        lines.append(line)
    return lines


def clip(text: str, size: float, width: float, bold: bool = False) -> str:
    """text, cut with an ellipsis to fit one line of width."""
    if text_width(text, size, bold) <= width:
        return text
    while text and text_width(text + "…", size, bold) > width:
        text = text[:-1]
    return text + "…"


def hexagon(cx: float, cy: float, r: float) -> list[Point]:
    """Pointy-top hexagon of circumradius r."""
    return [
        (
            cx + r * math.cos(math.radians(-90 + 60 * i)),
            cy + r * math.sin(math.radians(-90 + 60 * i)),
        )
        for i in range(6)
    ]


def _arc(cx: float, cy: float, r: float, a0: float, a1: float, n: int = 24) -> list[Point]:
    return [
        (
            cx + r * math.cos(math.radians(a0 + (a1 - a0) * i / n)),
            cy + r * math.sin(math.radians(a0 + (a1 - a0) * i / n)),
        )
        for i in range(n + 1)
    ]


def pictogram(kind: str, cx: float, cy: float, s: float, color: str) -> list[Shape]:
    """A line drawing in a box of half-size s centred on (cx, cy)."""
    lw = max(3.0, s * 0.11)

    def P(pts: list[Point], closed: bool = False, fill: str | None = None) -> Poly:
        return Poly(
            [(cx + x * s, cy + y * s) for x, y in pts],
            fill=fill,
            stroke=color,
            width=lw,
            closed=closed,
        )

    if kind == "env":  # thermometer
        return [
            P([(-0.12, 0.35), (-0.12, -0.6), (0.12, -0.6), (0.12, 0.35)]),
            Circle(cx, cy + 0.55 * s, 0.25 * s, fill=color),
            P([(0.25, -0.4), (0.45, -0.4)]),
            P([(0.25, -0.15), (0.45, -0.15)]),
            P([(0.25, 0.1), (0.45, 0.1)]),
        ]
    if kind == "doorway":  # door frame, a walker's arrow through it
        return [
            P([(-0.45, 0.7), (-0.45, -0.7), (0.15, -0.7), (0.15, 0.7)]),
            P([(-0.75, 0.0), (0.7, 0.0)]),
            P([(0.45, -0.25), (0.72, 0.0), (0.45, 0.25)]),
        ]
    if kind == "motion":  # a dome with waves
        out: list[Shape] = [P(_arc(0, 0.45, 0.3, 180, 360, 12), closed=True, fill=color)]
        for r in (0.55, 0.8):
            out.append(P(_arc(0, 0.45, r, 215, 325, 16)))
        return out
    if kind == "ble":  # the Bluetooth rune
        return [P([(-0.3, -0.3), (0.3, 0.3), (0.0, 0.6), (0.0, -0.6), (0.3, -0.3), (-0.3, 0.3)])]
    if kind == "noise":  # a level meter's bars, no microphone
        return [P([(x, 0.6), (x, 0.6 - h)]) for x, h in ((-0.5, 0.4), (-0.17, 0.8), (0.17, 1.2),
                                                          (0.5, 0.7))]  # fmt: skip
    if kind == "air":  # drifting particles
        return [Circle(cx + x * s, cy + y * s, r * s, fill=color)
                for x, y, r in ((-0.4, -0.3, 0.12), (0.1, -0.45, 0.09), (0.4, 0.05, 0.14),
                                (-0.15, 0.3, 0.1), (0.3, 0.5, 0.07))]  # fmt: skip
    if kind == "lock":
        return [
            P([(-0.5, 0.0), (0.5, 0.0), (0.5, 0.7), (-0.5, 0.7)], closed=True, fill=color),
            P([(-0.3, 0.0)] + _arc(0, -0.3, 0.3, 180, 360, 16) + [(0.3, 0.0)]),
        ]
    if kind == "nocamera":
        return [
            P([(-0.6, -0.3), (0.45, -0.3), (0.45, 0.45), (-0.6, 0.45)], closed=True),
            P([(0.45, 0.0), (0.75, -0.2), (0.75, 0.35), (0.45, 0.15)], closed=True),
            Circle(cx - 0.07 * s, cy + 0.07 * s, 0.18 * s, stroke=color, width=lw),
            P([(-0.75, -0.75), (0.75, 0.75)]),
        ]
    if kind == "why":  # a target
        return [
            Circle(cx, cy, 0.65 * s, stroke=color, width=lw),
            Circle(cx, cy, 0.35 * s, stroke=color, width=lw),
            Circle(cx, cy, 0.1 * s, fill=color),
        ]
    if kind == "who":  # a person
        return [
            Circle(cx, cy - 0.3 * s, 0.25 * s, fill=color),
            P(_arc(0, 0.65, 0.5, 180, 360, 16), closed=True, fill=color),
        ]
    if kind == "time":  # a clock
        return [
            Circle(cx, cy, 0.65 * s, stroke=color, width=lw),
            P([(0.0, -0.42), (0.0, 0.0), (0.3, 0.15)]),
        ]
    return []


class _Layout:
    def __init__(self) -> None:
        self.sign = Sign()

    def add(self, *shapes: Shape) -> None:
        self.sign.shapes.extend(shapes)

    def text(
        self,
        x: float,
        y: float,
        text: str,
        size: float,
        width: float,
        *,
        fill: str = INK,
        bold: bool = False,
        lead: float = 1.3,
        anchor: str = "start",
    ) -> float:
        """Wrapped text from baseline y; returns the baseline after the last line."""
        for line in wrap(text, size, width, bold):
            self.add(Text(x, y, line, size, fill, bold, anchor=anchor))
            y += size * lead
        return y

    def badge(
        self, kind: str, cx: float, cy: float, r: float, color: str, ink: str = PAPER
    ) -> None:
        self.add(Poly(hexagon(cx, cy, r), fill=color))
        self.add(*pictogram(kind, cx, cy, r * 0.55, ink))


def _rect(x0: float, y0: float, x1: float, y1: float, fill: str, crisp: bool = False) -> Poly:
    return Poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill=fill, crisp=crisp)


def _fit(text: str, size: float, width: float, bold: bool = True, mono: bool = False) -> float:
    """The largest size up to `size` at which text fits on one line of `width`."""
    while size > 12 and text_width(text, size, bold, mono) > width:
        size -= 1
    return size


FOOTER = 300  # the band with the QR code


def layout(
    policy: dict[str, Any],
    *,
    site: str = "",
    device: str | None = None,
    url: str | None = None,
    lang: str = DEFAULT_LANG,
    installed: str | None = None,
) -> Sign:
    """The sign for a (valid) policy, in sign units (W x H): the largest body text that fits.
    ``url`` is what the QR code opens: the sensor's page in the public register when there is
    one (docs/register.md), else the policy's ``policy_url``. ``lang`` picks the catalogue
    (catalogues/*.toml); ``installed`` is the date the sensor was installed, if known."""
    for body in range(24, 11, -1):
        sign, end = _layout(
            policy, site, device, body, url or policy["policy_url"], lang, installed, bool(url)
        )
        if end <= H - FOOTER:
            return sign
    raise UserError("the policy's texts are too long for the sign: shorten purpose or operator")


def _layout(
    policy: dict[str, Any],
    site: str,
    device: str | None,
    body: int,
    qr_url: str,
    lang: str,
    installed: str | None,
    to_register: bool,
) -> tuple[Sign, float]:
    t = load_catalogue(lang)
    L = _Layout()
    add = L.add
    digest = policy_hash(policy)
    inner = W - 2 * MARGIN
    add(_rect(0, 0, W, H, PAPER))

    # Header: the one sentence that must land in two seconds.
    add(_rect(0, 0, W, 250, BAND))
    kicker = t("sign.kicker") + (f" · {site.upper()}" if site else "")
    add(Text(MARGIN, 80, kicker, _fit(kicker, 28, inner), "#cfe3ea", True))
    headline = t("sign.headline")
    add(Text(MARGIN, 160, headline, _fit(headline, 66, inner), PAPER, True))
    sub = (
        t("sign.no_camera_loudness" if "noise" in policy["streams"] else "sign.no_camera")
        + " "
        + (t("sign.phones_counted") if "ble" in policy["streams"] else t("sign.no_phones"))
    )
    add(Text(MARGIN, 212, sub, _fit(sub, 29, inner, False), PAPER))

    # What it senses: one hexagon per stream.
    y = 315
    add(Text(MARGIN, y, t("sign.senses"), 38, INK, True))
    items = sensed(policy)
    col = inner / max(1, len(items))
    r = min(78.0, col * 0.33)
    cy = y + 30 + r
    for i, key in enumerate(items):
        cx = MARGIN + col * (i + 0.5)
        L.badge(key, cx, cy, r, SENSE, INK)
        L.text(
            cx, cy + r + 36, t(f"sensed.{key}"), 24, col - 16, bold=True, anchor="middle", lead=1.15
        )
    y = cy + r + 120

    # Two columns: what leaves, what never does.
    gap = 44
    cw = (inner - gap) / 2
    ends: list[float] = []
    columns = (
        ("lock", LEAVES, t("sign.leaves"), leaves_list(policy, lang)),
        ("nocamera", NEVER, t("sign.never"), never_list(policy, lang)),
    )
    for ci, (kind, color, title, lines) in enumerate(columns):
        x = MARGIN + ci * (cw + gap)
        L.badge(kind, x + 36, y, 40, color)
        add(Text(x + 90, y + 12, title, _fit(title, 32, cw - 90), color, True))
        yy = y + 82
        for line in lines:
            add(Circle(x + 9, yy - 8, 6, fill=color))
            yy = L.text(x + 26, yy, line, body, cw - 26, lead=1.27) + 10
        ends.append(yy)
    x = MARGIN
    y = max(ends)
    enc = t("leaves.encrypted")
    y = L.text(x + 26, y, enc, body, inner, fill=MUTED)
    opt = optout_line(policy, lang)
    if opt:
        y += 8
        add(_rect(MARGIN, y - 4, W - MARGIN, y + 50, LIGHT))
        add(Text(W / 2, y + 32, opt, _fit(opt, 24, inner - 30), INK, True, anchor="middle"))
        y += 60
    y += 50

    # Why, who, how long.
    op = policy["operator"]
    who = [op["name"], op["contact"], op.get("url", "")]
    if "dpo" in policy:
        who.append(t("sign.dpo", contact=policy["dpo"]["contact"]))
    if "authority" in policy:
        who.append(t("sign.authority", name=policy["authority"]["name"]))
    how_long = [retention_text(policy, lang), installed_text(policy, installed, lang) or ""]
    cols = (
        (
            "why",
            t("sign.why"),
            [policy["purpose"], t("sign.legal_basis", basis=policy["legal_basis"])],
        ),
        ("who", t("sign.who"), who),
        ("time", t("sign.how_long"), how_long),
    )
    cgap = 30
    cw3 = (inner - 2 * cgap) / 3
    ends = []
    for i, (kind, title, paras) in enumerate(cols):
        x = MARGIN + i * (cw3 + cgap)
        L.badge(kind, x + 30, y, 34, INFO)
        add(Text(x + 76, y + 10, title, _fit(title, 27, cw3 - 76), INFO, True))
        yy = y + 70
        for para in paras:
            if para:
                yy = L.text(x, yy, para, body - 1, cw3, lead=1.27) + 4
        ends.append(yy)
    end = max(ends) + 10
    rights = rights_text(policy, lang)
    if rights:
        add(Text(MARGIN, end + 24, t("rights.title"), 27, INFO, True))
        end = L.text(MARGIN, end + 60, rights, body - 1, inner, lead=1.27) + 10

    # Footer band: QR code, policy link and hash. The QR code is drawn module by module so
    # the PNG and the SVG hold the very matrix qrcode computed (tests read it back).
    fy = H - FOOTER
    add(_rect(0, fy, W, H, LIGHT))
    m = qr_matrix(qr_url)
    n = len(m)
    mod = math.floor((H - fy - 40) / n)
    qx, qy = MARGIN - 4 * mod // 2, fy + 20
    add(_rect(qx, qy, qx + mod * n, qy + mod * n, PAPER))
    for j, row in enumerate(m):
        i = 0
        while i < n:
            if not row[i]:
                i += 1
                continue
            k = i
            while k < n and row[k]:
                k += 1
            add(_rect(qx + i * mod, qy + j * mod, qx + k * mod, qy + (j + 1) * mod, INK, True))
            i = k
    sign = L.sign
    sign.qr_origin, sign.qr_module, sign.qr_size = (qx, qy), mod, n
    tx = qx + mod * n + 30
    tw = W - MARGIN - tx
    ty = fy + 75
    scan = t("sign.scan_register") if to_register else t("sign.scan_policy")
    add(Text(tx, ty, scan, _fit(scan, 34, tw), INK, True))
    # The URL in at most two lines (the QR code carries it whole).
    url = qr_url
    usize = 22
    while usize > 14 and len(wrap(url, usize, tw)) > 2:
        usize -= 1
    ulines = wrap(url, usize, tw)
    if len(ulines) > 2:
        ulines = [ulines[0], clip("".join(ulines[1:]), usize, tw)]
    ty += 40
    for line in ulines:
        add(Text(tx, ty, line, usize, INFO))
        ty += usize * 1.25
    ty += 22
    add(Text(tx, ty, t("sign.policy_id"), 26, MUTED))
    idx = tx + text_width(t("sign.policy_id"), 26) + 16
    add(Text(idx, ty + 2, hash_id(digest), 34, INK, True, True))
    ty = L.text(tx, ty + 36, t("sign.carries_id"), 21, tw, fill=MUTED)
    h = digest.hex()
    sha = "SHA-256 " + h
    add(Text(tx, ty + 4, sha, _fit(sha, 15, tw, False, True), MUTED, mono=True))
    parts = (
        t("sign.site", site=site) if site else "",
        t("sign.sensor", device=device) if device else "",
        policy["name"],
    )
    where = " · ".join(x for x in parts if x)
    add(Text(tx, H - 26, clip(where, 18, tw), 18, MUTED))
    return sign, end


# ---- back ends ----


def _svg_attrs(fill: str | None, stroke: str | None, width: float) -> str:
    a = f'fill="{fill}"' if fill else 'fill="none"'
    if stroke:
        a += f' stroke="{stroke}" stroke-width="{width:g}"'
        a += ' stroke-linejoin="round" stroke-linecap="round"'
    return a


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def to_svg(sign: Sign, title: str = "Sensor notice") -> str:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {sign.width} {sign.height}" '
        f'width="{sign.width}" height="{sign.height}" role="img" '
        f'aria-label="{html.escape(title)}">',
        f"<title>{html.escape(title)}</title>",
    ]
    for s in sign.shapes:
        if isinstance(s, Poly):
            pts = " ".join(f"{_num(x)},{_num(y)}" for x, y in s.points)
            tag = "polygon" if s.closed else "polyline"
            crisp = ' shape-rendering="crispEdges"' if s.crisp else ""
            out.append(f'<{tag} points="{pts}" {_svg_attrs(s.fill, s.stroke, s.width)}{crisp}/>')
        elif isinstance(s, Circle):
            out.append(
                f'<circle cx="{_num(s.cx)}" cy="{_num(s.cy)}" r="{_num(s.r)}" '
                f"{_svg_attrs(s.fill, s.stroke, s.width)}/>"
            )
        else:
            fam = MONO_FAMILY if s.mono else FONT_FAMILY
            weight = ' font-weight="bold"' if s.bold else ""
            out.append(
                f'<text x="{_num(s.x)}" y="{_num(s.y)}" font-family="{fam}" '
                f'font-size="{_num(s.size)}"{weight} fill="{s.fill}" text-anchor="{s.anchor}">'
                f"{html.escape(s.text)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out) + "\n"


_ANCHOR = {"start": "ls", "middle": "ms", "end": "rs"}


def to_png(sign: Sign, path: Path, scale: int = PNG_SCALE) -> None:
    img = Image.new("RGB", (sign.width * scale, sign.height * scale), PAPER)
    d = ImageDraw.Draw(img)
    for s in sign.shapes:
        if isinstance(s, Poly):
            pts = [(x * scale, y * scale) for x, y in s.points]
            if s.fill:
                d.polygon(pts, fill=s.fill)
            if s.stroke:
                w = round(s.width * scale)
                d.line(pts + (pts[:1] if s.closed else []), fill=s.stroke, width=w, joint="curve")
                if not s.closed:  # round caps, as the SVG draws them
                    for x, y in (pts[0], pts[-1]):
                        d.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=s.stroke)
        elif isinstance(s, Circle):
            box = (
                (s.cx - s.r) * scale,
                (s.cy - s.r) * scale,
                (s.cx + s.r) * scale,
                (s.cy + s.r) * scale,
            )
            d.ellipse(
                box, fill=s.fill, outline=s.stroke, width=round(s.width * scale) if s.stroke else 0
            )
        else:
            font = _font(round(s.size * scale), s.bold, s.mono)
            d.text(
                (s.x * scale, s.y * scale), s.text, fill=s.fill, font=font, anchor=_ANCHOR[s.anchor]
            )
    img.save(path, "PNG", dpi=(150 * scale, 150 * scale))


# ---- the HTML page ----

_CSS = """
body{font-family:"DejaVu Sans",Verdana,Arial,sans-serif;color:#1d2b36;margin:0;background:#f4f7f9}
main{max-width:60rem;margin:0 auto;padding:1.5rem;background:#fff}
h1{color:#0b4f6c;margin-top:0}h2{color:#0b4f6c;border-bottom:2px solid #eef3f6;padding-bottom:.2rem}
.sign svg{width:100%;height:auto;border:1px solid #ccd6dd}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.35rem .5rem;
border-bottom:1px solid #e1e8ed;vertical-align:top}th{background:#eef3f6}
code,pre{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.85rem}
pre{background:#eef3f6;padding:.75rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.never li::marker{color:#c62828}.leaves li::marker{color:#2e7d32}
"""


def _stream_rows(
    policy: dict[str, Any], lang: str = DEFAULT_LANG
) -> list[tuple[str, str, str, str]]:
    t = load_catalogue(lang)
    rows: list[tuple[str, str, str, str]] = []
    for key in streams.names():
        s = policy["streams"].get(key)
        if s is None:
            continue
        prot: list[str] = []
        if "k" in s:
            prot.append(t("streams.k", k=s["k"]))
        if "noise" in s:
            eps = t.number(f"{s['noise']['epsilon_milli'] / 1000:g}")
            prot.append(t("streams.dp_noise", bound=person_bound(key, s), epsilon=eps))
        if key == "env":
            r = s["resolution"]
            prot.append(
                t(
                    "streams.rounded",
                    temp=_centi(r["temp_centi"], lang),
                    rh=_centi(r["rh_centi"], lang),
                    pressure=r["pressure_pa"],
                )
            )
        if key == "ble":
            prot.append(t("streams.ble_sketch", bits=s["sketch_bits"], rssi=s["rssi_floor"]))
        rows.append(
            (
                t(f"streams.{key}"),
                window_phrase(s["window_s"], lang),
                ", ".join(s["release"]),
                "; ".join(prot) or t("streams.none"),
            )
        )
    return rows


def to_html(
    policy: dict[str, Any],
    sign: Sign,
    *,
    site: str = "",
    device: str | None = None,
    url: str | None = None,
    lang: str = DEFAULT_LANG,
    installed: str | None = None,
) -> str:
    t = load_catalogue(lang)
    digest = policy_hash(policy)
    e = html.escape
    op = policy["operator"]
    register_url, url = url, policy["policy_url"]
    rows = "".join(
        f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td><td>{e(d)}</td></tr>"
        for a, b, c, d in _stream_rows(policy, lang)
    )
    leaves = "".join(f"<li>{e(x)}</li>" for x in leaves_list(policy, lang))
    never = "".join(f"<li>{e(x)}</li>" for x in never_list(policy, lang))
    opt = optout_line(policy, lang)
    spend = t.number(f"{policy['budget']['epsilon_milli_per_day'] / 1000:g}")
    where = ", ".join(
        x
        for x in (
            site and t("page.where_site", site=site),
            device and t("page.where_sensor", device=device),
        )
        if x
    )
    person = (
        f"<p>{e(person_text(policy, lang))}</p>"
        if any(k in policy["streams"] for k in streams.people())
        else ""
    )
    op_url = f'<br><a href="{e(op["url"])}">{e(op["url"])}</a>' if "url" in op else ""
    extra_who = ""
    if "dpo" in policy:
        extra_who += f"<br>{e(t('sign.dpo', contact=policy['dpo']['contact']))}"
    if "authority" in policy:
        a = policy["authority"]
        name = e(t("sign.authority", name=a["name"]))
        extra_who += f'<br><a href="{e(a["url"])}">{name}</a>' if "url" in a else f"<br>{name}"
    rights = rights_text(policy, lang)
    rights_html = f"<h2>{e(t('rights.title'))}</h2>\n<p>{e(rights)}</p>\n" if rights else ""
    inst = installed_text(policy, installed, lang)
    register_line = (
        f'\n<p>{e(t("page.register"))} <a href="{e(register_url)}">{e(register_url)}</a></p>'
        if register_url
        else ""
    )
    pretty = json.dumps(json.loads(canonical(policy)), indent=2, ensure_ascii=False)
    title = t("page.title", name=policy["name"])
    heads = "".join(
        f"<th>{e(t(f'page.col_{c}'))}</th>" for c in ("stream", "window", "released", "protection")
    )
    return f"""<!doctype html>
<html lang="{e(lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{e(t("page.h1"))}</h1>
<p>{e(policy["purpose"])}{" (" + e(where) + ")" if where else ""}</p>
<div class="sign">{to_svg(sign, title)}</div>

<h2>{e(t("page.leaves"))}</h2>
<ul class="leaves">{leaves}<li>{e(t("page.encrypted"))}</li></ul>

<h2>{e(t("page.never"))}</h2>
<ul class="never">{never}</ul>
{f"<p><strong>{e(opt)}</strong></p>" if opt else ""}

<h2>{e(t("page.why"))}</h2>
<p>{e(policy["purpose"])}</p>
<p>{e(t("sign.legal_basis", basis=policy["legal_basis"]))}</p>

<h2>{e(t("page.who"))}</h2>
<p>{e(op["name"])}<br>{e(op["contact"])}{op_url}{extra_who}</p>
{rights_html}
<h2>{e(t("page.how_long"))}</h2>
<p>{e(retention_text(policy, lang))}{" " + e(inst) if inst else ""}
{e(t("page.coarsened", metres=policy["location"]["coarsen_m"]))}</p>

<h2>{e(t("page.streams"))}</h2>
<table>
<tr>{heads}</tr>
{rows}
</table>
{person}
<p>{e(t("page.budget", epsilon=spend))}</p>

<h2>{e(t("page.policy"))}</h2>
<p>{e(t("page.full_policy"))} <a href="{e(url)}">{e(url)}</a></p>{register_line}
<p>{e(t("page.policy_id"))} <strong><code>{hash_id(digest)}</code></strong><br>
{e(t("page.sha"))} <code>{digest.hex()}</code></p>
<p>{e(t("page.check"))} <code>atsource policy check FILE</code>.</p>
<pre>{e(pretty)}</pre>
</main>
</body>
</html>
"""


def render(
    policy: dict[str, Any],
    out_dir: Path,
    *,
    site: str,
    device: str | None = None,
    url: str | None = None,
    lang: str = DEFAULT_LANG,
    installed: str | None = None,
) -> list[Path]:
    """Write notice.html, notice.svg and notice.png for a valid policy into out_dir, in the
    language ``lang``; the QR code opens ``url`` (the sensor's register page) or else the
    policy's ``policy_url``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sign = layout(policy, site=site, device=device, url=url, lang=lang, installed=installed)
    title = load_catalogue(lang)("page.title", name=policy["name"])
    paths = [out_dir / "notice.html", out_dir / "notice.svg", out_dir / "notice.png"]
    paths[0].write_text(
        to_html(policy, sign, site=site, device=device, url=url, lang=lang, installed=installed),
        encoding="utf-8",
    )
    paths[1].write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n' + to_svg(sign, title), encoding="utf-8"
    )
    to_png(sign, paths[2])
    return paths


__all__ = ["DAY_S", "Sign", "layout", "qr_matrix", "render", "to_png", "to_svg"]
