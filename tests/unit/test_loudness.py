"""The firmware's sound level meter (``sensor.loudness``, ``sensor.i2smic``) under CPython, on
synthetic blocks: the A-weighting against IEC 61672-1, calibration, the window's statistics."""

from __future__ import annotations

import array
import errno
import math

import pytest
from sensor import i2smic, loudness

RATE = 16000
SENS_DBFS = -26.0  # INMP441 / ICS-43434: -26 dBFS at 94 dB SPL, 1 kHz

# IEC 61672-1:2013 Table 3: the A-weighting at the octave nominal frequencies below the
# Nyquist frequency of 16 kHz sampling, and the class 1 acceptance limits (dB). The table's
# weights belong to the exact base-10 frequencies, 1000 * 10**(0.3 k) Hz (31.62 for 31.5).
IEC_OCTAVES = [
    (31.5, -39.4, 1.5, 1.5),
    (63.0, -26.2, 1.0, 1.0),
    (125.0, -16.1, 1.0, 1.0),
    (250.0, -8.6, 1.0, 1.0),
    (500.0, -3.2, 1.0, 1.0),
    (1000.0, 0.0, 0.7, 0.7),
    (2000.0, 1.2, 1.0, 1.0),
    (4000.0, 1.0, 1.0, 1.0),
]


def sine_block(freq: float, db_spl: float, n: int, phase: float = 0.3) -> array.array:
    """n 32-bit I2S slots of a sine at ``db_spl``: 24-bit samples, left-justified."""
    rms = (2**31 / math.sqrt(2)) * 10 ** ((db_spl - 94.0 + SENS_DBFS) / 20)
    amp = rms * math.sqrt(2)
    return array.array(
        "i",
        (
            int(round(amp * math.sin(2 * math.pi * freq * i / RATE + phase))) & ~0xFF
            for i in range(n)
        ),
    )


def level_db(block: array.array, settle: int) -> float:
    n = len(block) - settle
    n -= n % 16
    e = loudness.weighted_energy(block, settle, settle + n)
    return loudness.block_level(e, n) / 100


@pytest.mark.parametrize(("freq", "weight", "plus", "minus"), IEC_OCTAVES)
def test_a_weighting_meets_iec_61672_class_1(
    freq: float, weight: float, plus: float, minus: float
) -> None:
    # 0.5 s of settling covers the 20.6 Hz poles' transient; 1 s measured spans whole cycles.
    exact = 1000 * 10 ** (0.3 * round(math.log10(freq / 1000) / 0.3))
    got = level_db(sine_block(exact, 80.0, 24000), 8000) - 80.0
    assert weight - minus <= got <= weight + plus, f"{freq} Hz: {got:.2f} dB, IEC {weight}"


def test_calibration_94_db_at_1_khz() -> None:
    # The microphone's reference: a 1 kHz tone at 94 dB SPL reads 94 dB(A).
    assert level_db(sine_block(1000.0, 94.0, 8192), 128) == pytest.approx(94.0, abs=0.15)


@pytest.mark.parametrize("db", [35.0, 50.0, 70.0, 90.0, 110.0])
def test_level_is_linear_over_the_street_range(db: float) -> None:
    assert level_db(sine_block(1000.0, db, 4096), 128) == pytest.approx(db, abs=0.3)


def test_a_block_of_digital_silence_reads_the_floor_not_minus_infinity() -> None:
    assert level_db(array.array("i", [0] * 512), 128) < 0


@pytest.mark.parametrize("x", [1, 2, 3, 7, 10, 99, 1000, 65535, 65536, 123456789, 2**37, 10**15])
def test_integer_log(x: int) -> None:
    assert loudness.cdb(x) == pytest.approx(1000 * math.log10(x), abs=2)


@pytest.mark.parametrize(("a", "b"), [(6000, 6000), (6000, 5950), (7000, 6000), (5000, 8000)])
def test_levels_add_on_an_energy_basis(a: int, b: int) -> None:
    exact = 1000 * math.log10(10 ** (a / 1000) + 10 ** (b / 1000))
    assert loudness.level_add(a, b) == pytest.approx(exact, abs=2)


def test_window_laeq_is_the_energy_mean_not_the_mean_of_decibels() -> None:
    w = loudness.LevelWindow()
    for lv in (6000, 7000):
        w.add(lv)
    out = w.close()
    assert out is not None
    exact = 10 * math.log10((10**6 + 10**7) / 2)  # 67.40 dB, not 65
    assert out["laeq"] / 100 == pytest.approx(exact, abs=0.03)
    assert (out["lamin"], out["lamax"], out["samples"]) == (6000, 7000, 2)


def test_window_percentiles_from_the_histogram() -> None:
    w = loudness.LevelWindow()
    levels = [5000 + 10 * i for i in range(100)]  # 50.0 .. 59.9 dB, evenly
    for lv in reversed(levels):
        w.add(lv)
    out = w.close()
    assert out is not None
    # L10: exceeded by 10 % of the blocks (59.0 dB); L90 by 90 % (51.0 dB); 0.5 dB bins.
    assert abs(out["l10"] - 5900) <= 50
    assert abs(out["l90"] - 5100) <= 50
    assert out["lamin"] <= out["l90"] <= out["laeq"] <= out["l10"] <= out["lamax"]


def test_window_resets_and_says_none_when_empty() -> None:
    w = loudness.LevelWindow()
    w.add(6000)
    assert w.close() is not None
    assert w.close() is None
    w.add(4000)
    out = w.close()
    assert out is not None and out["laeq"] == 4000 and out["samples"] == 1


class FakeI2S:
    """machine.I2S's readinto/deinit over prepared blocks (the emulated boards test the
    real shim; this checks the driver's own logic)."""

    def __init__(self, blocks: list[array.array]) -> None:
        self.blocks = blocks
        self.opened = 0
        self.closed = 0

    def open(self, ibuf: int) -> FakeI2S:
        self.opened += 1
        return self

    def readinto(self, mv: memoryview) -> int:
        src = self.blocks.pop(0) if len(self.blocks) > 1 else self.blocks[0]
        mv[:] = src[: len(mv)]
        return len(mv) * 4

    def deinit(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("stuck", [0, -1, 0x12345600])
def test_stuck_or_silent_data_is_a_fault_and_probe_says_enodev(stuck: int) -> None:
    bus = FakeI2S([array.array("i", [stuck] * 512)])
    mic = i2smic.Mic(bus.open)
    assert mic.read() is False
    assert mic.faults == 1
    with pytest.raises(OSError) as exc:
        mic.probe()
    assert exc.value.args[0] == errno.ENODEV
    assert bus.opened == bus.closed == 2  # the bus is stopped after every block


def test_meter_reads_one_block_into_one_buffer() -> None:
    tone = sine_block(1000.0, 70.0, 512)
    bus = FakeI2S([array.array("i", [0] * 512), tone])  # start-up frames, then the block
    mic = i2smic.Mic(bus.open)
    buf = mic.buf
    meter = loudness.LevelMeter(mic)
    cdb = meter.measure()
    assert cdb is not None and abs(cdb - 7000) <= 40
    assert mic.buf is buf and mic.faults == 0
