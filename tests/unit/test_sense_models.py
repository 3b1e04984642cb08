"""The emulator's sound and particulate models, their scenario tables and the UART FIFO."""

from __future__ import annotations

import json
import math

import pytest
from atsource.emulator.mic_model import LevelProfile, MicModel, a_weighting_db
from atsource.emulator.pms5003_model import Pms5003Model
from atsource.emulator.scenario import US, ScenarioError, parse_scenario
from atsource.emulator.serialbus import UartPort
from atsource.emulator.world import ScenarioWorld

MINIMAL = 'start = "2026-06-01T00:00:00Z"\nduration = "2h"\n'
T0 = 1_780_272_000 * US


def test_a_weighting_curve_is_iec_at_the_octaves() -> None:
    # IEC 61672-1's table is for the exact base-10 octaves, 1000 * 10**(0.3 k) Hz.
    f = [1000 * 10 ** (0.3 * k) for k in range(-5, 4)]
    iec = [-39.4, -26.2, -16.1, -8.6, -3.2, 0.0, 1.2, 1.0, -1.1]
    assert [round(float(x), 1) for x in a_weighting_db(f)] == iec


def test_laeq_is_an_energy_mean_and_events_raise_it() -> None:
    steady = LevelProfile(lambda t: 60.0)
    assert steady.laeq(T0, T0 + 600 * US) == pytest.approx(60.0, abs=0.01)
    # Half the time 50 dB, half 70 dB: LAeq 67.0 dB, not 60.
    half = LevelProfile(lambda t: 50.0 if (t - T0) // US % 2 else 70.0)
    assert half.laeq(T0, T0 + 600 * US) == pytest.approx(10 * math.log10((1e5 + 1e7) / 2), 0.01)
    event = LevelProfile(lambda t: 50.0, [(T0 + 300 * US, 80.0, 3.0)])
    assert event.level(T0 + 300 * US) == pytest.approx(80.0, abs=0.01)
    assert event.laeq(T0, T0 + 600 * US) > 55.0


def test_events_are_drawn_from_the_seed() -> None:
    def draw(seed: int) -> list[tuple[int, float, float]]:
        return LevelProfile.draw_events(seed, T0, T0 + 3600 * US, lambda t: 10.0, (70, 80), (2, 4))

    assert draw(1) == draw(1) != draw(2)
    assert 2 <= len(draw(1)) <= 25


def test_microphone_blocks_are_deterministic_24_bit_left_justified() -> None:
    mic = MicModel(LevelProfile(lambda t: 60.0), seed=4)
    a = mic.samples(T0, 512, 16000)
    assert a == mic.samples(T0, 512, 16000) != mic.samples(T0 + 1000, 512, 16000)
    words = [int.from_bytes(a[i : i + 4], "little", signed=True) for i in range(0, len(a), 4)]
    assert all(w & 0xFF == 0 for w in words) and len(set(words)) > 400
    # Louder profile, louder samples: +20 dB is ten times the amplitude.
    loud = MicModel(LevelProfile(lambda t: 80.0), seed=4).samples(T0, 512, 16000)
    lw = [int.from_bytes(loud[i : i + 4], "little", signed=True) for i in range(0, len(loud), 4)]
    ratio = math.sqrt(sum(x * x for x in lw) / sum(x * x for x in words))
    assert ratio == pytest.approx(10.0, rel=0.01)
    assert MicModel(LevelProfile(lambda t: 60.0), silent=[(T0, T0 + US)]).samples(
        T0, 8, 16000
    ) == bytes(32)


def test_uart_fifo_overflows_as_a_board_ring_buffer_does() -> None:
    model = Pms5003Model(lambda t: (1.0, 2.0, 3.0))
    port = UartPort(model)
    port.request({"op": "init", "cfg": {"baud": 9600, "rxbuf": 64}}, T0, 0)
    # Active mode: a 32-byte frame every 2.3 s; after 10 s nobody read, only 64 bytes remain.
    r = json.loads(port.request({"op": "r", "n": 0}, T0 + 10 * US, 0))
    assert r["a"] == 64 and port.lost == 4 * 32 - 64


def test_wrong_baud_rate_is_heard_as_garbage() -> None:
    model = Pms5003Model(lambda t: (1.0, 2.0, 3.0), seed=1)
    port = UartPort(model)
    port.request({"op": "init", "cfg": {"baud": 115200}}, T0, 0)
    r = json.loads(port.request({"op": "r", "n": 200}, T0 + 5 * US, 0))
    assert len(r["d"]) == 2 * 64 and "424d001c" not in r["d"]


def test_sound_and_air_tables_reach_the_world() -> None:
    sc = parse_scenario(
        MINIMAL
        + '[sound]\nkind = "crowd"\nevents_per_hour = 0\nlevel = { mean = 70.0 }\n'
        + "[air]\npm2_5 = { mean = 20.0 }\npm10_ratio = 2.0\n",
        "s.toml",
    )
    pins = {"mic": {"id": 0}, "pm": {"id": 1}, "i2c": {"id": 0}}
    world = ScenarioWorld(sc, {"pins": pins})
    assert world.i2s_device(1) is None and world.uart_device(0) is None
    mic = world.i2s_device(0)
    assert mic.kind == "crowd" and mic.profile.level(sc.start_us) == pytest.approx(70.0, 0.01)
    assert world.pm_at(sc.start_us) == pytest.approx((14.0, 20.0, 40.0))
    gt = world.ground_truth(900)[0]
    assert gt["laeq_db"] == pytest.approx(70.0, abs=0.01)
    assert gt["pm2_5_mean"] == pytest.approx(20.0) and gt["pm10_mean"] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[sound]\nkind = "birds"\n', "s.toml: sound.kind: expected traffic or crowd, got 'birds'"),
        ("[sound]\nlevel = { mean = 200.0 }\n", "s.toml: sound.level.mean: expected a number"),
        ("[sound]\nevent_peak_db = [80, 70]\n", "s.toml: sound.event_peak_db[1]: expected"),
        ("[air]\npm10_ratio = 0.5\n", "s.toml: air.pm10_ratio: expected a number >= 1"),
        ("[air]\npm25 = { mean = 3.0 }\n", "s.toml: air.pm25: unknown key (did you mean 'pm2_5'?)"),
        (
            '[[faults]]\nkind = "mic_failur"\nat = "+1h"\nduration = "1m"\n',
            "s.toml: faults[0].kind: expected one of",
        ),
    ],
)
def test_bad_sound_and_air_tables_are_one_clear_line(extra: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(MINIMAL + extra, "s.toml")
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
