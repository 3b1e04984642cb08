"""Scenario files: a place over time, in TOML, validated into frozen dataclasses.

A scenario says what the weather does, who arrives when and how they behave, and which faults
strike. It holds no randomness itself: the world (``world.py``) draws the population from it with
a seed. The weather is the one model that lives here, because it is a pure function of time (and
the seed) that both the world and ground truth evaluate.

Every error is a ``ScenarioError`` whose message is one line naming the file, the key and the
problem, e.g. ``plaza.toml: people.hourly_rate: expected 24 numbers, got 23``. Unknown keys are
errors so that a typo never silently falls back to a default. See docs/scenarios.md.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..safeload import parse_toml, read_text

US = 1_000_000
DAY_US = 86_400 * US
SCENARIO_MAX_BYTES = 1 << 20  # the shipped scenarios are a few KB


class ScenarioError(ValueError):
    """A scenario file is unreadable or invalid; the message is one line."""


# --- deterministic noise ------------------------------------------------------------------------
# Weather drift and per-advert jitter must be pure functions of (seed, time or index) so that the
# world gives the same answer however the engine slices time. A 64-bit mixer (splitmix64's
# finaliser) is far cheaper than seeding a random.Random per sample and is stable across Python
# versions and PYTHONHASHSEED.

_MASK64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """A well-mixed 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def hash_unit(key: int, index: int) -> float:
    """A uniform float in [0, 1), a pure function of ``key`` and ``index``."""
    return mix64(mix64(key) ^ (index & _MASK64)) / 2.0**64


def _knot(key: int, index: int) -> float:
    return 2.0 * hash_unit(key, index) - 1.0


def _smooth_noise(key: int, x: float) -> float:
    """Value noise in [-1, 1]: random knots at integer x, cosine-interpolated (smooth drift)."""
    i = math.floor(x)
    f = (1.0 - math.cos((x - i) * math.pi)) / 2.0
    return _knot(key, i) * (1.0 - f) + _knot(key, i + 1) * f


def _linear_noise(key: int, x: float) -> float:
    """Value noise in [-1, 1], linearly interpolated (fast fluctuation, still continuous)."""
    i = math.floor(x)
    f = x - i
    return _knot(key, i) * (1.0 - f) + _knot(key, i + 1) * f


# --- data model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeatherSeries:
    """One weather quantity: a daily cosine cycle or a daily-wrapping point series.

    Values are in internal units (degC, %RH, Pa). ``points`` holds (second of day, value) pairs,
    strictly increasing; when it is set, ``mean``/``amplitude``/``peak_hour`` are unused.
    ``drift`` is the amplitude of a slow random wander with knots every ``drift_hours``;
    ``noise`` the amplitude of a fast wander with knots every minute.
    """

    mean: float = 0.0
    amplitude: float = 0.0
    peak_hour: float = 15.0
    points: tuple[tuple[float, float], ...] | None = None
    drift: float = 0.0
    drift_hours: float = 6.0
    noise: float = 0.0

    def base(self, t_us: int) -> float:
        """The deterministic part (cycle or interpolated points) at ``t_us``."""
        sod = (t_us % DAY_US) / US
        if self.points is None:
            phase = 2.0 * math.pi * (sod / 3600.0 - self.peak_hour) / 24.0
            return self.mean + self.amplitude * math.cos(phase)
        pts = self.points
        if len(pts) == 1:
            return pts[0][1]
        # Find the segment around sod, wrapping from the last point to the first one + 24 h.
        prev_s, prev_v = pts[-1][0] - 86_400.0, pts[-1][1]
        for s, v in pts:
            if s > sod:
                return prev_v + (v - prev_v) * (sod - prev_s) / (s - prev_s)
            prev_s, prev_v = s, v
        s, v = pts[0][0] + 86_400.0, pts[0][1]
        return prev_v + (v - prev_v) * (sod - prev_s) / (s - prev_s)

    def value(self, t_us: int, key: int) -> float:
        """The value at ``t_us``; ``key`` selects the random drift/noise realisation."""
        v = self.base(t_us)
        if self.drift:
            v += self.drift * _smooth_noise(key, t_us / (self.drift_hours * 3600.0 * US))
        if self.noise:
            v += self.noise * _linear_noise(key ^ 0x5A5A5A5A, t_us / (60.0 * US))
        return v


@dataclass(frozen=True)
class Weather:
    temperature: WeatherSeries = WeatherSeries(mean=15.0, amplitude=5.0, peak_hour=15.0)
    humidity: WeatherSeries = WeatherSeries(mean=70.0, amplitude=15.0, peak_hour=5.0)
    pressure: WeatherSeries = WeatherSeries(mean=101_325.0)  # Pa

    def at(self, t_us: int, seed: int) -> tuple[float, float, float]:
        """(temperature degC, humidity %RH, pressure Pa) at ``t_us`` for this seed."""
        key = mix64(seed)
        t = self.temperature.value(t_us, key ^ 1)
        rh = min(100.0, max(0.0, self.humidity.value(t_us, key ^ 2)))
        p = self.pressure.value(t_us, key ^ 3)
        return t, rh, p

    def environment(self, seed: int) -> Callable[[int], tuple[float, float, float]]:
        """A ``t_us -> (degC, %RH, Pa)`` function, the shape a sensor model wants."""
        return lambda t_us: self.at(t_us, seed)


@dataclass(frozen=True)
class People:
    """Who comes, how long they stay, what they carry. Shares are probabilities in [0, 1]."""

    hourly_rate: tuple[float, ...] = (0.0,) * 24
    dwell_median_min: float = 10.0
    dwell_sigma: float = 0.8
    dwell_min_min: float = 0.5
    dwell_max_min: float = 480.0
    door_share: float = 1.0
    group_share: float = 0.0
    stop_in_beam_share: float = 0.0
    motion_per_hour: float = 2.0
    phone_share: float = 0.8
    public_address_share: float = 0.05
    rotation_minutes: float = 15.0
    opt_out_share: float = 0.0
    named_share: float = 0.1
    adv_interval_s: float = 2.0
    adv_jitter_s: float = 0.01
    rssi_near: float = -50.0
    rssi_far: float = -100.0
    passersby_rate: tuple[float, ...] = (0.0,) * 24

    @property
    def arrivals_per_day(self) -> float:
        return sum(self.hourly_rate)


@dataclass(frozen=True)
class Sound:
    """The street's sound level in dB(A) (the ``level`` series) and its events: vehicle
    pass-bys (``traffic``) or bursts of voices (``crowd``), a Poisson process per hour with a
    peak level and a half width drawn uniformly from the ranges."""

    level: WeatherSeries = WeatherSeries(
        mean=55.0, amplitude=8.0, peak_hour=14.0, drift=2.0, noise=2.0
    )
    kind: str = "traffic"
    events_per_hour: tuple[float, ...] = (6.0,) * 24
    event_peak_db: tuple[float, float] = (68.0, 80.0)
    event_half_width_s: tuple[float, float] = (2.0, 5.0)


@dataclass(frozen=True)
class Air:
    """Particulates: PM2.5 in ug/m3 (the ``pm2_5`` series), PM1 and PM10 as ratios to it;
    ``checksum_error_rate`` is the share of the sensor's frames corrupted on the line."""

    pm2_5: WeatherSeries = WeatherSeries(mean=12.0, amplitude=5.0, peak_hour=8.0, drift=3.0)
    pm1_ratio: float = 0.7
    pm10_ratio: float = 1.6
    checksum_error_rate: float = 0.0

    def at(self, t_us: int, seed: int) -> tuple[float, float, float]:
        """(PM1, PM2.5, PM10) in ug/m3 at ``t_us`` for this seed."""
        pm25 = max(0.0, self.pm2_5.value(t_us, mix64(seed) ^ 4))
        return pm25 * self.pm1_ratio, pm25, pm25 * self.pm10_ratio


FAULT_KINDS = ("sensor_disconnect", "network_outage", "power_cut", "mic_failure", "pm_silent")


@dataclass(frozen=True)
class Fault:
    kind: str
    start_us: int  # absolute, microseconds since the Unix epoch
    duration_us: int

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us


@dataclass(frozen=True)
class Scenario:
    source: str
    name: str
    description: str
    start_us: int
    duration_us: int
    seed: int = 1
    window_s: int = 900
    weather: Weather = field(default_factory=Weather)
    people: People = field(default_factory=People)
    faults: tuple[Fault, ...] = ()
    sound: Sound = field(default_factory=Sound)
    air: Air = field(default_factory=Air)

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us


# --- parsing helpers ---------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_UNIT_US = {"d": DAY_US, "h": 3600 * US, "m": 60 * US, "s": US, "ms": 1000}
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_duration_us(text: str) -> int | None:
    """``"24h"``, ``"90m"``, ``"3600s"``, ``"2d"``, ``"1h30m"`` -> microseconds (None if bad)."""
    text = text.strip()
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if not m:
            return None
        total += float(m.group(1)) * _UNIT_US[m.group(2)]
        pos = m.end()
    return round(total) if pos else None


def parse_clock_s(text: str) -> int | None:
    """``"HH:MM"`` or ``"HH:MM:SS"`` -> seconds of day (None if bad; ``24:00`` allowed)."""
    m = _CLOCK_RE.match(text.strip())
    if not m:
        return None
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if mi > 59 or s > 59 or h * 3600 + mi * 60 + s > 86_400:
        return None
    return h * 3600 + mi * 60 + s


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value) if len(value) < 40 else "a string"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Table:
    """A TOML table being read: typed getters with one-line errors, then an unknown-key check."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        self.source, self.path = source, path
        if not isinstance(data, dict):
            raise self.error(path, f"expected a table, got {_describe(data)}")
        self.data: dict[str, Any] = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, key: str, message: str) -> ScenarioError:
        where = f"{key}: " if key else ""
        return ScenarioError(f"{self.source}: {where}{message}")

    def raw(self, name: str, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data and required:
            raise self.error(self.key(name), "missing (required)")
        return self.data.get(name)

    def number(
        self,
        name: str,
        default: float | None = None,
        lo: float | None = None,
        hi: float | None = None,
        above: float | None = None,
        below: float | None = None,
    ) -> float:
        value = self.raw(name, required=default is None)
        if value is None:
            assert default is not None
            return default
        return _check_number(self, self.key(name), value, lo, hi, above, below)

    def share(self, name: str, default: float, below_one: bool = False) -> float:
        if below_one:
            return self.number(name, default, lo=0.0, below=1.0)
        return self.number(name, default, lo=0.0, hi=1.0)

    def string(self, name: str, default: str | None = None) -> str:
        value = self.raw(name, required=default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str):
            raise self.error(self.key(name), f"expected a string, got {_describe(value)}")
        return value

    def sub(self, name: str) -> _Table | None:
        value = self.raw(name)
        return None if value is None else _Table(self.source, self.key(name), value)

    def done(self) -> None:
        for name in self.data:
            if name not in self.used:
                hint = difflib.get_close_matches(name, sorted(self.used), n=1)
                known = (
                    f"did you mean {hint[0]!r}?"
                    if hint
                    else f"known: {', '.join(sorted(self.used))}"
                )
                raise self.error(self.key(name), f"unknown key ({known})")


def _check_number(
    table: _Table,
    key: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> float:
    if not _is_number(value):
        raise table.error(key, f"expected a number, got {_describe(value)}")
    v = float(value)
    bounds = []
    if lo is not None:
        bounds.append(f">= {lo:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    if hi is not None:
        bounds.append(f"<= {hi:g}")
    if below is not None:
        bounds.append(f"< {below:g}")
    ok = (
        (lo is None or v >= lo)
        and (above is None or v > above)
        and (hi is None or v <= hi)
        and (below is None or v < below)
    )
    if not ok:
        raise table.error(key, f"expected a number {' and '.join(bounds)}, got {value!r}")
    return v


def _rate_list(t: _Table, name: str, default: tuple[float, ...] | None) -> tuple[float, ...]:
    """24 non-negative per-hour numbers; for ``passersby_rate`` one number means all day."""
    value = t.raw(name, required=default is None)
    key = t.key(name)
    if value is None:
        assert default is not None
        return default
    if default is not None and _is_number(value):
        return (_check_number(t, key, value, lo=0.0),) * 24
    if not isinstance(value, list):
        raise t.error(key, f"expected an array of 24 numbers, got {_describe(value)}")
    if len(value) != 24:
        raise t.error(key, f"expected 24 numbers, got {len(value)}")
    return tuple(_check_number(t, f"{key}[{i}]", v, lo=0.0) for i, v in enumerate(value))


# Per quantity: (file unit, scale to internal unit, plausible range in file units).
_QUANTITIES = {
    "temperature": ("degC", 1.0, -60.0, 70.0),
    "humidity": ("%RH", 1.0, 0.0, 100.0),
    "pressure": ("hPa", 100.0, 300.0, 1100.0),
    "level": ("dB(A)", 1.0, 20.0, 130.0),
    "pm2_5": ("ug/m3", 1.0, 0.0, 1000.0),
}


def _weather_series(t: _Table, name: str, default: WeatherSeries) -> WeatherSeries:
    tab = t.sub(name)
    if tab is None:
        return default
    unit, scale, lo, hi = _QUANTITIES[name]
    drift = tab.number("drift", 0.0, lo=0.0) * scale
    drift_hours = tab.number("drift_hours", 6.0, above=0.0)
    noise = tab.number("noise", 0.0, lo=0.0) * scale
    raw_points = tab.raw("points")
    if raw_points is not None:
        for k in ("mean", "amplitude", "peak_hour"):
            if k in tab.data:
                raise tab.error(tab.key(k), "not allowed together with points")
        points = _points(tab, raw_points, unit, lo, hi, scale)
        tab.done()
        return WeatherSeries(points=points, drift=drift, drift_hours=drift_hours, noise=noise)
    mean = tab.number("mean", None, lo=lo, hi=hi)
    amplitude = tab.number("amplitude", 0.0, lo=0.0)
    peak = tab.number("peak_hour", 15.0, lo=0.0, below=24.0)
    if mean - amplitude < lo or mean + amplitude > hi:
        raise tab.error(
            tab.key("amplitude"),
            f"mean +/- amplitude leaves the plausible range {lo:g}..{hi:g} {unit}",
        )
    tab.done()
    return WeatherSeries(
        mean=mean * scale,
        amplitude=amplitude * scale,
        peak_hour=peak,
        drift=drift,
        drift_hours=drift_hours,
        noise=noise,
    )


def _points(
    tab: _Table, raw: Any, unit: str, lo: float, hi: float, scale: float
) -> tuple[tuple[float, float], ...]:
    key = tab.key("points")
    if not isinstance(raw, list) or not raw:
        raise tab.error(key, 'expected a non-empty array of ["HH:MM", value] pairs')
    out: list[tuple[float, float]] = []
    for i, item in enumerate(raw):
        ik = f"{key}[{i}]"
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise tab.error(ik, f'expected a ["HH:MM", value] pair, got {_describe(item)}')
        sod = parse_clock_s(item[0])
        if sod is None or sod >= 86_400:
            raise tab.error(ik, f"expected a time of day HH:MM (00:00..23:59), got {item[0]!r}")
        if out and sod <= out[-1][0]:
            raise tab.error(ik, f"times must increase, {item[0]!r} is not after the previous one")
        v = _check_number(tab, ik, item[1], lo=lo, hi=hi)
        out.append((float(sod), v * scale))
    return tuple(out)


def _start_us(t: _Table) -> int:
    value = t.raw("start", required=True)
    if isinstance(value, str):
        text = value.strip().replace("z", "Z")
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise t.error("start", f"expected an ISO 8601 UTC time, got {value!r}") from None
    elif isinstance(value, datetime):
        dt = value
    else:
        raise t.error("start", f"expected an ISO 8601 UTC time, got {_describe(value)}")
    if dt.tzinfo is None:
        raise t.error("start", "no time zone: end it with Z (UTC), e.g. 2026-06-01T00:00:00Z")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (dt - epoch) // timedelta(microseconds=1)


def _duration(t: _Table, name: str, key: str | None = None) -> int:
    value = t.raw(name, required=True)
    key = key or t.key(name)
    us = parse_duration_us(value) if isinstance(value, str) else None
    if us is None:
        raise t.error(
            key, f'expected a duration like "24h", "90m", "3600s", got {_describe(value)}'
        )
    if us <= 0:
        raise t.error(key, "must be longer than zero")
    return us


def _people(t: _Table | None) -> People:
    if t is None:
        return People()
    d = People()
    dwell = t.sub("dwell_minutes")
    median, sigma, lo, hi = d.dwell_median_min, d.dwell_sigma, d.dwell_min_min, d.dwell_max_min
    if dwell is not None:
        median = dwell.number("median", median, above=0.0)
        sigma = dwell.number("sigma", sigma, lo=0.0, hi=5.0)
        lo = dwell.number("min", lo, above=0.0)
        hi = dwell.number("max", hi, lo=lo)
        dwell.done()
    rssi = t.sub("rssi")
    near, far = d.rssi_near, d.rssi_far
    if rssi is not None:
        near = rssi.number("near", near, lo=-127.0, hi=0.0)
        far = rssi.number("far", far, lo=-127.0, hi=near)
        rssi.done()
    people = People(
        hourly_rate=_rate_list(t, "hourly_rate", None),
        dwell_median_min=median,
        dwell_sigma=sigma,
        dwell_min_min=lo,
        dwell_max_min=hi,
        door_share=t.share("door_share", d.door_share),
        # A share of 1 would make every arrival follow another one: an endless group.
        group_share=t.share("group_share", d.group_share, below_one=True),
        stop_in_beam_share=t.share("stop_in_beam_share", d.stop_in_beam_share),
        motion_per_hour=t.number("motion_per_hour", d.motion_per_hour, lo=0.0),
        phone_share=t.share("phone_share", d.phone_share),
        public_address_share=t.share("public_address_share", d.public_address_share),
        rotation_minutes=t.number("rotation_minutes", d.rotation_minutes, above=0.0),
        opt_out_share=t.share("opt_out_share", d.opt_out_share),
        named_share=t.share("named_share", d.named_share),
        adv_interval_s=t.number("adv_interval_s", d.adv_interval_s, lo=0.02, hi=60.0),
        adv_jitter_s=t.number("adv_jitter_s", d.adv_jitter_s, lo=0.0),
        rssi_near=near,
        rssi_far=far,
        passersby_rate=_rate_list(t, "passersby_rate", d.passersby_rate),
    )
    if people.adv_jitter_s >= people.adv_interval_s * 0.5:
        raise t.error(t.key("adv_jitter_s"), "must be below half of adv_interval_s")
    t.done()
    return people


def _range(t: _Table, name: str, default: tuple[float, float], lo: float) -> tuple[float, float]:
    value = t.raw(name)
    if value is None:
        return default
    if not isinstance(value, list) or len(value) != 2:
        raise t.error(t.key(name), f"expected [low, high], got {_describe(value)}")
    a = _check_number(t, f"{t.key(name)}[0]", value[0], lo=lo)
    b = _check_number(t, f"{t.key(name)}[1]", value[1], lo=a)
    return a, b


def _sound(t: _Table | None) -> Sound:
    if t is None:
        return Sound()
    d = Sound()
    kind = t.string("kind", d.kind)
    if kind not in ("traffic", "crowd"):
        raise t.error(t.key("kind"), f"expected traffic or crowd, got {kind!r}")
    sound = Sound(
        level=_weather_series(t, "level", d.level),
        kind=kind,
        events_per_hour=_rate_list(t, "events_per_hour", d.events_per_hour),
        event_peak_db=_range(t, "event_peak_db", d.event_peak_db, 20.0),
        event_half_width_s=_range(t, "event_half_width_s", d.event_half_width_s, 0.1),
    )
    t.done()
    return sound


def _air(t: _Table | None) -> Air:
    if t is None:
        return Air()
    d = Air()
    air = Air(
        pm2_5=_weather_series(t, "pm2_5", d.pm2_5),
        pm1_ratio=t.number("pm1_ratio", d.pm1_ratio, above=0.0, hi=1.0),
        pm10_ratio=t.number("pm10_ratio", d.pm10_ratio, lo=1.0, hi=10.0),
        checksum_error_rate=t.share("checksum_error_rate", d.checksum_error_rate, below_one=True),
    )
    t.done()
    return air


def _fault_start(t: _Table, key: str, value: Any, start_us: int) -> int:
    """``"HH:MM"`` on the start day (UTC) or ``"+2h30m"`` after the start -> absolute us."""
    if isinstance(value, str) and value.strip().startswith("+"):
        off = parse_duration_us(value.strip()[1:])
        if off is not None:
            return start_us + off
    elif isinstance(value, str):
        sod = parse_clock_s(value)
        if sod is not None:
            return start_us - start_us % DAY_US + sod * US
    raise t.error(
        key, f'expected "HH:MM" on the start day or an offset like "+2h30m", got {_describe(value)}'
    )


def _faults(t: _Table, raw: Any, start_us: int, end_us: int) -> tuple[Fault, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise t.error("faults", "expected an array of tables ([[faults]])")
    faults: list[tuple[Fault, int]] = []
    for i, item in enumerate(raw):
        ft = _Table(t.source, f"faults[{i}]", item)
        kind = ft.string("kind")
        if kind not in FAULT_KINDS:
            raise ft.error(
                ft.key("kind"), f"expected one of {', '.join(FAULT_KINDS)}, got {kind!r}"
            )
        at = _fault_start(ft, ft.key("at"), ft.raw("at", required=True), start_us)
        if not start_us <= at < end_us:
            raise ft.error(ft.key("at"), "falls outside the scenario (start .. start + duration)")
        faults.append((Fault(kind, at, _duration(ft, "duration")), i))
        ft.done()
    # Overlapping faults of one kind would give e.g. two "network down" events in a row.
    faults.sort(key=lambda fi: (fi[0].kind, fi[0].start_us))
    for (a, ia), (b, ib) in zip(faults, faults[1:], strict=False):
        if a.kind == b.kind and b.start_us < a.end_us:
            raise t.error(f"faults[{ib}]", f"overlaps the {a.kind} fault faults[{ia}]; merge them")
    return tuple(sorted((f for f, _ in faults), key=lambda f: f.start_us))


# --- entry points ------------------------------------------------------------------------------


def parse_scenario(text: str, name: str) -> Scenario:
    """Parse and validate scenario TOML; ``name`` (usually the file name) prefixes errors."""
    try:
        data = parse_toml(text, name)
    except UserError as exc:
        raise ScenarioError(str(exc)) from None
    top = _Table(name, "", data)
    start_us = _start_us(top)
    duration_us = _duration(top, "duration")
    seed = top.raw("seed")
    if seed is None:
        seed = 1
    elif not isinstance(seed, int) or isinstance(seed, bool):
        raise top.error("seed", f"expected an integer, got {_describe(seed)}")
    window_s = top.raw("window_s")
    if window_s is None:
        window_s = 900
    elif not isinstance(window_s, int) or isinstance(window_s, bool) or window_s <= 0:
        raise top.error(
            "window_s", f"expected a positive integer (seconds), got {_describe(window_s)}"
        )
    weather_t = top.sub("weather")
    weather = Weather()
    if weather_t is not None:
        weather = Weather(
            temperature=_weather_series(weather_t, "temperature", weather.temperature),
            humidity=_weather_series(weather_t, "humidity", weather.humidity),
            pressure=_weather_series(weather_t, "pressure", weather.pressure),
        )
        weather_t.done()
    scenario = Scenario(
        source=name,
        name=top.string("name", Path(name).stem),
        description=top.string("description", ""),
        start_us=start_us,
        duration_us=duration_us,
        seed=seed,
        window_s=window_s,
        weather=weather,
        people=_people(top.sub("people")),
        faults=_faults(top, top.raw("faults"), start_us, start_us + duration_us),
        sound=_sound(top.sub("sound")),
        air=_air(top.sub("air")),
    )
    top.done()
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors name the file as it was given."""
    try:
        text = read_text(path, "scenario", SCENARIO_MAX_BYTES)
    except UserError as exc:
        raise ScenarioError(str(exc)) from None
    return parse_scenario(text, str(path))
