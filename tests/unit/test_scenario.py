"""Scenario files: parsing, defaults, the weather model and every validation error path."""

from __future__ import annotations

from pathlib import Path

import pytest
from atsource.emulator.scenario import (
    DAY_US,
    US,
    People,
    Scenario,
    ScenarioError,
    WeatherSeries,
    load_scenario,
    parse_clock_s,
    parse_duration_us,
    parse_scenario,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
START_US = 1_780_272_000 * US  # 2026-06-01T00:00:00Z

MINIMAL = 'start = "2026-06-01T00:00:00Z"\nduration = "24h"\n'
RATES = "hourly_rate = [" + ", ".join(["10"] * 24) + "]\n"


def parse(extra: str = "", head: str = MINIMAL) -> Scenario:
    return parse_scenario(head + extra, "t.toml")


def error_of(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "t.toml")
    return str(info.value)


# --- the shipped scenarios ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["smoke", "residential", "plaza"])
def test_shipped_scenarios_load(name: str) -> None:
    sc = load_scenario(SCENARIOS / f"{name}.toml")
    assert sc.name == name
    assert sc.description
    assert sc.end_us > sc.start_us


def test_shipped_scenario_sizes() -> None:
    plaza = load_scenario(SCENARIOS / "plaza.toml")
    residential = load_scenario(SCENARIOS / "residential.toml")
    smoke = load_scenario(SCENARIOS / "smoke.toml")
    assert 10_000 <= plaza.people.arrivals_per_day <= 15_000
    assert 300 <= residential.people.arrivals_per_day <= 600
    assert plaza.duration_us == residential.duration_us == DAY_US
    assert smoke.duration_us == 3600 * US
    kinds = {f.kind: f for f in plaza.faults}
    assert kinds["sensor_disconnect"].duration_us == 3600 * US
    assert kinds["network_outage"].duration_us < 3600 * US
    noon = START_US + 12 * 3600 * US
    assert abs(kinds["sensor_disconnect"].start_us - noon) <= 3600 * US


# --- values and defaults --------------------------------------------------------------------


def test_minimal_scenario_defaults() -> None:
    sc = parse()
    assert sc.name == "t"  # from the file name
    assert sc.description == ""
    assert sc.start_us == START_US
    assert sc.duration_us == DAY_US
    assert (sc.seed, sc.window_s) == (1, 900)
    assert sc.people == People()
    assert sc.people.arrivals_per_day == 0
    assert sc.faults == ()
    assert sc.source == "t.toml"


@pytest.mark.parametrize(
    ("text", "us"),
    [("24h", DAY_US), ("90m", 5400 * US), ("3600s", 3600 * US), ("2d", 2 * DAY_US),
     ("1h30m", 5400 * US), ("1.5h", 5400 * US), ("250ms", 250_000), ("1d2h3m4s", 93_784 * US)],
)  # fmt: skip
def test_durations(text: str, us: int) -> None:
    assert parse_duration_us(text) == us


@pytest.mark.parametrize("text", ["", "24", "h", "24 hours", "-1h", "1h-", "1y"])
def test_bad_durations(text: str) -> None:
    assert parse_duration_us(text) is None


def test_clock() -> None:
    assert parse_clock_s("06:30") == 6 * 3600 + 1800
    assert parse_clock_s("23:59:59") == 86_399
    assert parse_clock_s("24:00") == 86_400
    for bad in ("24:01", "6:60", "noon", "06-30", "1:2"):
        assert parse_clock_s(bad) is None


@pytest.mark.parametrize(
    "start",
    ['"2026-06-01T00:00:00Z"', '"2026-06-01T00:00:00+00:00"', "2026-06-01T00:00:00Z",
     '"2026-06-01T02:00:00+02:00"'],
)  # fmt: skip
def test_start_forms(start: str) -> None:
    sc = parse_scenario(f'start = {start}\nduration = "1h"\n', "t.toml")
    assert sc.start_us == START_US


def test_people_and_units() -> None:
    sc = parse(
        "[weather.pressure]\nmean = 1000.0\namplitude = 1.0\n"
        "[people]\n" + RATES + "passersby_rate = 5\n"
        "dwell_minutes = { median = 3 }\nrssi = { far = -99 }\n"
    )
    assert sc.weather.pressure.mean == 100_000.0  # hPa in the file, Pa inside
    assert sc.weather.pressure.amplitude == 100.0
    assert sc.people.hourly_rate == (10.0,) * 24
    assert sc.people.passersby_rate == (5.0,) * 24
    assert sc.people.dwell_median_min == 3.0
    assert sc.people.dwell_sigma == People().dwell_sigma
    assert (sc.people.rssi_near, sc.people.rssi_far) == (-50.0, -99.0)


def test_faults_at_clock_and_offset() -> None:
    sc = parse(
        '[[faults]]\nkind = "power_cut"\nat = "+2h30m"\nduration = "10s"\n'
        '[[faults]]\nkind = "network_outage"\nat = "01:15"\nduration = "5m"\n',
        head='start = "2026-06-01T00:30:00Z"\nduration = "24h"\n',
    )
    net, power = sc.faults  # sorted by start
    assert net.start_us == START_US + 75 * 60 * US  # 01:15 on the start day
    assert power.start_us == START_US + 30 * 60 * US + 150 * 60 * US
    assert power.end_us - power.start_us == 10 * US


# --- weather ----------------------------------------------------------------------------------


def test_daily_cycle_peaks_at_peak_hour() -> None:
    s = WeatherSeries(mean=20.0, amplitude=5.0, peak_hour=15.0)
    assert s.base(START_US + 15 * 3600 * US) == pytest.approx(25.0)
    assert s.base(START_US + 3 * 3600 * US) == pytest.approx(15.0)
    assert s.base(START_US + DAY_US + 15 * 3600 * US) == pytest.approx(25.0)


def test_points_interpolate_and_wrap() -> None:
    sc = parse('[weather.humidity]\npoints = [["06:00", 80.0], ["18:00", 40.0]]\n')
    h = sc.weather.humidity
    assert h.base(START_US + 6 * 3600 * US) == pytest.approx(80.0)
    assert h.base(START_US + 12 * 3600 * US) == pytest.approx(60.0)
    assert h.base(START_US + 18 * 3600 * US) == pytest.approx(40.0)
    assert h.base(START_US) == pytest.approx(60.0)  # midnight: halfway from 40 back to 80
    assert h.base(START_US + 3 * 3600 * US) == pytest.approx(70.0)
    single = parse('[weather.humidity]\npoints = [["06:00", 55.0]]\n').weather.humidity
    assert single.base(START_US + 123 * US) == 55.0


def test_weather_is_deterministic_bounded_and_seeded() -> None:
    sc = parse("[weather.temperature]\nmean = 10.0\ndrift = 2.0\nnoise = 0.1\n")
    times = [START_US + i * 977 * US for i in range(300)]
    a = [sc.weather.at(t, 1) for t in times]
    assert a == [sc.weather.at(t, 1) for t in times]
    assert a != [sc.weather.at(t, 2) for t in times]
    assert all(7.9 <= temp <= 12.1 for temp, _, _ in a)
    assert all(0.0 <= rh <= 100.0 for _, rh, _ in a)
    # Continuous: one second apart, the value barely moves.
    t = times[17]
    assert abs(sc.weather.at(t, 1)[0] - sc.weather.at(t + US, 1)[0]) < 0.01


def test_environment_shape() -> None:
    env = parse().weather.environment(seed=5)
    t, rh, p = env(START_US)
    assert isinstance(t, float) and isinstance(rh, float) and isinstance(p, float)
    assert p == pytest.approx(101_325.0)


# --- errors: one line, naming file and key ---------------------------------------------------

HEAD = MINIMAL
PEOPLE = HEAD + "[people]\n" + RATES

ERRORS = [
    ("start = \n", "t.toml: invalid TOML"),
    ('duration = "1h"\n', "t.toml: start: missing"),
    ('start = "June 1st"\nduration = "1h"\n', "t.toml: start: expected an ISO 8601"),
    ('start = "2026-06-01T00:00:00"\nduration = "1h"\n', "t.toml: start: no time zone"),
    ("start = 12\nduration = '1h'\n", "t.toml: start: expected an ISO 8601"),
    ('start = "2026-06-01T00:00:00Z"\n', "t.toml: duration: missing"),
    ('start = "2026-06-01T00:00:00Z"\nduration = "24 hours"\n', "t.toml: duration: expected a"),
    ('start = "2026-06-01T00:00:00Z"\nduration = 24\n', "t.toml: duration: expected a duration"),
    ('start = "2026-06-01T00:00:00Z"\nduration = "0h"\n', "t.toml: duration: must be longer"),
    (HEAD + 'seed = "1"\n', "t.toml: seed: expected an integer"),
    (HEAD + "seed = true\n", "t.toml: seed: expected an integer"),
    (HEAD + "window_s = 0\n", "t.toml: window_s: expected a positive integer"),
    (HEAD + "window_s = 1.5\n", "t.toml: window_s: expected a positive integer"),
    (HEAD + "name = 3\n", "t.toml: name: expected a string"),
    (HEAD + 'duraton = "1h"\n', "t.toml: duraton: unknown key (did you mean 'duration'?)"),
    (HEAD + "weather = 3\n", "t.toml: weather: expected a table"),
    (HEAD + "[weather.wind]\nmean = 3\n", "t.toml: weather.wind: unknown key"),
    (HEAD + "[weather.temperature]\namplitude = 3\n", "weather.temperature.mean: missing"),
    (HEAD + "[weather.temperature]\nmean = 'warm'\n", "weather.temperature.mean: expected a num"),
    (HEAD + "[weather.pressure]\nmean = 101325\n", "weather.pressure.mean: expected a number >="),
    (HEAD + "[weather.humidity]\nmean = 90\namplitude = 20\n", "weather.humidity.amplitude: mean"),
    (HEAD + "[weather.temperature]\nmean = 9\npeak_hour = 24\n", "temperature.peak_hour: expected"),
    (HEAD + "[weather.temperature]\nmean = 9\ndrift = -1\n", "weather.temperature.drift: expected"),
    (HEAD + "[weather.temperature]\nmean = 9\nnoise = nan\n", "temperature.noise: expected"),
    (HEAD + "[weather.temperature]\nmean = 9\nmaen = 9\n", "temperature.maen: unknown key (did"),
    (HEAD + '[weather.humidity]\npoints = [["06:00", 50]]\nmean = 50\n', "humidity.mean: not allo"),
    (HEAD + "[weather.humidity]\npoints = []\n", "weather.humidity.points: expected a non-empty"),
    (HEAD + '[weather.humidity]\npoints = [["06:00", 50], ["05:00", 60]]\n', "points[1]: times"),
    (HEAD + '[weather.humidity]\npoints = [["25:00", 50]]\n', "points[0]: expected a time of day"),
    (HEAD + '[weather.humidity]\npoints = [["06:00", "x"]]\n', "points[0]: expected a number"),
    (HEAD + '[weather.humidity]\npoints = [["06:00", 150]]\n', "points[0]: expected a number >="),
    (HEAD + "[weather.humidity]\npoints = [[6, 50]]\n", "humidity.points[0]: expected a [\"HH:MM"),
    (HEAD + "[people]\ndoor_share = 0.5\n", "t.toml: people.hourly_rate: missing"),
    (HEAD + "[people]\nhourly_rate = [" + ", ".join(["1"] * 23) + "]\n",
     "t.toml: people.hourly_rate: expected 24 numbers, got 23"),
    (HEAD + "[people]\nhourly_rate = 5\n", "people.hourly_rate: expected an array of 24 numbers"),
    (HEAD + "[people]\nhourly_rate = [" + ", ".join(["1"] * 23) + ", -1]\n",
     "people.hourly_rate[23]: expected a number >= 0"),
    (HEAD + "[people]\nhourly_rate = [" + ", ".join(["1"] * 23) + ', "x"]\n',
     "people.hourly_rate[23]: expected a number, got 'x'"),
    (PEOPLE + "door_share = 1.5\n", "t.toml: people.door_share: expected a number >= 0 and <= 1"),
    (PEOPLE + "door_share = true\n", "t.toml: people.door_share: expected a number, got true"),
    (PEOPLE + "group_share = 1.0\n", "people.group_share: expected a number >= 0 and < 1"),
    (PEOPLE + "phone_share = -0.1\n", "people.phone_share: expected a number >= 0"),
    (PEOPLE + "rotation_minutes = 0\n", "people.rotation_minutes: expected a number > 0"),
    (PEOPLE + "adv_interval_s = 0\n", "people.adv_interval_s: expected a number >= 0.02"),
    (PEOPLE + "adv_jitter_s = 1.5\n", "people.adv_jitter_s: must be below half"),
    (PEOPLE + "dwell_minutes = 5\n", "people.dwell_minutes: expected a table"),
    (PEOPLE + "dwell_minutes = { sigma = 'wide' }\n", "people.dwell_minutes.sigma: expected a nu"),
    (PEOPLE + "dwell_minutes = { mean = 5 }\n", "people.dwell_minutes.mean: unknown key (did you"),
    (PEOPLE + "dwell_minutes = { min = 10, max = 5 }\n", "people.dwell_minutes.max: expected"),
    (PEOPLE + "rssi = { near = -90, far = -50 }\n", "t.toml: people.rssi.far: expected a number"),
    (PEOPLE + "rssi = { near = 10 }\n", "t.toml: people.rssi.near: expected a number >= -127"),
    (PEOPLE + "passersby_rate = [1, 2]\n", "people.passersby_rate: expected 24 numbers, got 2"),
    (PEOPLE + "phone_shar = 0.5\n", "people.phone_shar: unknown key (did you mean 'phone_share'"),
    (HEAD + "faults = 1\n", "t.toml: faults: expected an array of tables"),
    (HEAD + "faults = [1]\n", "t.toml: faults[0]: expected a table"),
    (HEAD + '[[faults]]\nkind = "flood"\nat = "01:00"\nduration = "1h"\n',
     "t.toml: faults[0].kind: expected one of sensor_disconnect, network_outage, power_cut"),
    (HEAD + '[[faults]]\nat = "01:00"\nduration = "1h"\n', "t.toml: faults[0].kind: missing"),
    (HEAD + '[[faults]]\nkind = "power_cut"\nduration = "1h"\n', "faults[0].at: missing"),
    (HEAD + '[[faults]]\nkind = "power_cut"\nat = "noon"\nduration = "1h"\n',
     'faults[0].at: expected "HH:MM" on the start day or an offset'),
    (HEAD + '[[faults]]\nkind = "power_cut"\nat = "+25h"\nduration = "1h"\n',
     "faults[0].at: falls outside the scenario"),
    (HEAD + '[[faults]]\nkind = "power_cut"\nat = "01:00"\n', "faults[0].duration: missing"),
    (HEAD + '[[faults]]\nkind = "power_cut"\nat = "01:00"\nduration = "soon"\n',
     "faults[0].duration: expected a duration"),
    (HEAD + '[[faults]]\nkind = "power_cut"\nat = "01:00"\nduration = "1h"\nwhy = 1\n',
     "faults[0].why: unknown key"),
    (HEAD + '[[faults]]\nkind = "network_outage"\nat = "01:00"\nduration = "1h"\n'
     '[[faults]]\nkind = "power_cut"\nat = "01:10"\nduration = "1m"\n'
     '[[faults]]\nkind = "network_outage"\nat = "01:30"\nduration = "1h"\n',
     "t.toml: faults[2]: overlaps the network_outage fault faults[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_error_paths_are_one_clear_line(text: str, expected: str) -> None:
    message = error_of(text)
    assert expected in message
    assert message.startswith("t.toml: ")
    assert "\n" not in message


def test_error_messages_examples() -> None:
    text = PEOPLE.replace(RATES, "hourly_rate = [" + ", ".join(["1"] * 23) + "]\n")
    assert error_of(text) == "t.toml: people.hourly_rate: expected 24 numbers, got 23"


def test_fault_before_start_on_start_day() -> None:
    text = (
        'start = "2026-06-01T06:00:00Z"\nduration = "6h"\n'
        '[[faults]]\nkind = "power_cut"\nat = "05:00"\nduration = "1m"\n'
    )
    assert "faults[0].at: falls outside the scenario" in error_of(text)


def test_load_scenario_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError, match=r"nope\.toml: no such scenario file"):
        load_scenario(missing)
    bad = tmp_path / "plaza.toml"
    bad.write_text(MINIMAL + "[people]\nhourly_rate = [1]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    assert str(info.value) == f"{bad}: people.hourly_rate: expected 24 numbers, got 1"
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_scenario(binary)
