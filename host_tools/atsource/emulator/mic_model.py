"""An I2S MEMS microphone (INMP441 / ICS-43434 class) in a street: blocks of samples whose
A-weighted level follows a sound-level profile, with ground truth in dB(A).

The level profile is a pure function of time (and the seed): a daily course with slow drift
and fast fluctuation (``scenario.WeatherSeries``), plus events (vehicle pass-bys or bursts of
voices, a Poisson process per hour whose times are drawn up front). A block is coloured noise
of the profile's spectrum (``traffic``: pink from 50 Hz with a tyre hump near 1 kHz;
``crowd``: the voice band, 200 Hz to 4 kHz), scaled so that its own A-weighted level, computed
on the host by FFT with IEC 61672-1's analog A-weighting, equals the profile's level at the
block's middle. Samples are 24-bit, left-justified in 32-bit little-endian slots, for a
microphone of sensitivity ``sensitivity_dbfs`` at 94 dB SPL (0 dBFS: a full-scale sine).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from .scenario import US

FULL_SCALE = float(1 << 23)  # 24-bit peak
FLOOR_DBA = 30.0  # the microphone's self-noise (INMP441: 33 dBA; ICS-43434: 29 dBA)
# INMP441 datasheet, "Normal Operation": operational 2**18 SCK cycles after power-up; with 64
# SCK cycles per frame that is 4096 frames at any sample rate (256 ms at 16 kHz). The SD line
# is not driven until then: zeros.
STARTUP_FRAMES = 4096


def a_weighting_db(f: np.ndarray) -> np.ndarray:
    """IEC 61672-1 A-weighting in dB (the analog definition, 0 dB at 1 kHz)."""
    f2 = np.maximum(np.asarray(f, dtype=float), 1e-3) ** 2
    ra = (12194.217**2 * f2 * f2) / (
        (f2 + 20.598997**2)
        * np.sqrt((f2 + 107.65265**2) * (f2 + 737.86223**2))
        * (f2 + 12194.217**2)
    )
    return 20.0 * np.log10(ra) + 2.0


def _shape(kind: str, f: np.ndarray) -> np.ndarray:
    """Amplitude spectrum of a profile (relative)."""
    g = np.zeros_like(f)
    band = f >= 20.0
    if kind == "crowd":
        g[band] = 1.0 / (1.0 + (200.0 / f[band]) ** 2) / (1.0 + (f[band] / 4000.0) ** 2)
    else:  # traffic: pink (1/sqrt f) from 50 Hz, a tyre/road hump around 1 kHz
        x = np.maximum(f[band], 50.0)
        g[band] = (1.0 / np.sqrt(x)) * (1.0 + 1.5 * np.exp(-((np.log2(x / 1000.0)) ** 2)))
    return g


class LevelProfile:
    """Sound level in dB(A) as a function of time: ``base(t)`` plus events."""

    def __init__(
        self,
        base: Callable[[int], float],
        events: list[tuple[int, float, float]] | None = None,
    ) -> None:
        self.base = base
        self.events = sorted(events or [])  # (peak time us, peak dB(A), half width s)
        self._peaks = [e[0] for e in self.events]

    @staticmethod
    def draw_events(
        seed: int,
        start_us: int,
        end_us: int,
        per_hour: Callable[[int], float],
        peak_db: tuple[float, float],
        half_width_s: tuple[float, float],
    ) -> list[tuple[int, float, float]]:
        rng = random.Random(f"{seed}/sound-events")
        out: list[tuple[int, float, float]] = []
        t = float(start_us)
        hour = 3600 * US
        while t < end_us:
            rate = per_hour(int(t)) / hour
            if rate <= 0:
                t = (int(t) // hour + 1) * hour
                continue
            t += rng.expovariate(rate)
            if t < end_us and per_hour(int(t)) > 0:
                out.append((int(t), rng.uniform(*peak_db), rng.uniform(*half_width_s)))
        return out

    def level(self, t_us: int) -> float:
        e = 10.0 ** (self.base(t_us) / 10.0)
        # Events within 10 minutes matter (a bell in energy: 1 / (1 + (dt / w)^2)).
        i = bisect.bisect_left(self._peaks, t_us - 600 * US)
        while i < len(self.events) and self.events[i][0] <= t_us + 600 * US:
            tp, peak, w = self.events[i]
            dt = (t_us - tp) / US
            e += 10.0 ** (peak / 10.0) / (1.0 + (dt / w) ** 2)
            i += 1
        return 10.0 * math.log10(e + 10.0 ** (FLOOR_DBA / 10.0))

    def laeq(self, t0_us: int, t1_us: int, step_us: int = US) -> float:
        """The true LAeq over [t0, t1): energy mean of the level, sampled every ``step_us``."""
        n = max(1, (t1_us - t0_us) // step_us)
        e = sum(10.0 ** (self.level(t0_us + k * step_us + step_us // 2) / 10.0) for k in range(n))
        return 10.0 * math.log10(e / n)


class MicModel:
    """The microphone on an I2S bus: ``samples()`` answers the engine's I2S reads."""

    def __init__(
        self,
        profile: LevelProfile,
        seed: int = 1,
        kind: str = "traffic",
        sensitivity_dbfs: float = -26.0,
        silent: list[tuple[int, int]] | None = None,
    ) -> None:
        self.profile = profile
        self.seed = seed
        self.kind = kind
        self.sensitivity = sensitivity_dbfs
        self.silent = silent or []  # intervals when the microphone is dead (all-zero data)
        self.startup_frames = STARTUP_FRAMES
        self.blocks: list[tuple[int, float]] = []  # (block middle, level) of every block served
        self._shape_cache: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _spectrum(self, n: int, rate: int) -> tuple[np.ndarray, np.ndarray]:
        key = (n, rate)
        if key not in self._shape_cache:
            f = np.fft.rfftfreq(n, 1.0 / rate)
            g = _shape(self.kind, f)
            wa = 10.0 ** (a_weighting_db(f) / 20.0)
            self._shape_cache[key] = (g, wa)
        return self._shape_cache[key]

    def samples(self, t_us: int, n: int, rate: int) -> bytes:
        if any(a <= t_us < b for a, b in self.silent):
            return bytes(4 * n)
        mid = t_us + n * US // (2 * rate)
        level = self.profile.level(mid)
        self.blocks.append((mid, level))
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, t_us & 0xFFFFFFFFFFFF, n])
        g, wa = self._spectrum(n, rate)
        # Random phases, fixed magnitudes: a noise whose energy is spread evenly over the
        # block, so any part of it carries the block's level (a firmware measures a part).
        spec = g * np.exp(2j * np.pi * rng.random(len(g)))
        x = np.fft.irfft(spec, n)
        # Scale so that the A-weighted mean square matches the level (Parseval on the rfft).
        aw = np.abs(np.fft.rfft(x) * wa) ** 2
        aw[1:] *= 2.0
        if n % 2 == 0:
            aw[-1] /= 2.0
        ms = float(aw.sum()) / n / n
        # 0 dBFS = a full-scale sine: mean square FULL_SCALE^2 / 2 at 94 - sensitivity dB SPL.
        target = (FULL_SCALE**2 / 2.0) * 10.0 ** ((level - 94.0 + self.sensitivity) / 10.0)
        x *= math.sqrt(target / ms) if ms > 0 else 0.0
        s = np.clip(np.round(x), -(1 << 23), (1 << 23) - 1).astype(np.int32)
        return (s.astype("<i4") << 8).tobytes()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "sensitivity_dbfs": self.sensitivity}
