"""The noise and air streams as the framework runs them (firmware/sensor/streams/noise.py and
air.py on the senses drivers): switched on in /config.json, a provisioned board releases both
records through the privacy gate, sealed into the outbox, and an unprovisioned one prints their
bench lines; the values are those of the scenario's models (docs/sensors.md gives the errors)."""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

import pytest
from atsource import paths, record
from atsource import policy as host
from atsource.boards import load_board
from atsource.emulator.api import make_world, prepare_flash
from atsource.emulator.engine import EmulatedBoard

sys.path.insert(0, str(Path(__file__).parent))
from provisioned import provision_flash  # noqa: E402

US = 1_000_000
HOUR = 3600 * US
ON = {"env": True, "doorway": True, "motion": True, "ble": True, "noise": True, "air": True}
WIFI = {"ssid": "x", "key": ""}
STAMP = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"


def _policy() -> dict:
    p = copy.deepcopy(host.load_policy(host.DEFAULT))
    p["streams"]["noise"] = {"window_s": 900, "release": ["laeq", "lamin", "lamax", "samples"]}
    p["streams"]["air"] = {"window_s": 900, "release": ["mean", "max", "samples"]}
    assert host.validate(p) == []
    return p


def _truth(world, start: int) -> dict:  # type: ignore[no-untyped-def]
    return {row["start"]: row for row in world.ground_truth(900)}[start]


def _epoch(stamp: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


@pytest.mark.parametrize("board", ["esp32-devkitc", "pico-w"])
def test_a_provisioned_board_releases_noise_and_air_through_the_gate(
    board: str, tmp_path: Path
) -> None:
    b = load_board(board)
    flash = tmp_path / "flash"
    flash.mkdir()
    provision_flash(b, flash, b"\1\2\3\4\1", b"k" * 16, b"i" * 13, wifi=WIFI, sensors=ON)
    pol = _policy()
    (flash / "policy.json").write_bytes(host.canonical(pol))
    world = make_world(b, "plaza", 1, None)
    emu = EmulatedBoard(b, flash, world=world, seed=1, entry="sensor.app")
    stats = emu.run(duration_us=HOUR + 60 * US)
    lines = [line for _, line in emu.lines]
    tag = host.policy_hash(pol)[:4].hex()
    assert f"policy {tag} in force: air ble doorway env health motion noise" in lines
    noise = [m for m in (re.match(r"rel noise " + STAMP + r"/900 (.*)$", x) for x in lines) if m]
    air = [m for m in (re.match(r"rel air " + STAMP + r"/900 (.*)$", x) for x in lines) if m]
    assert len(noise) >= 3 and len(air) >= 3, "\n".join(lines[-30:])
    key = record.KEY
    for i, m in enumerate(noise):
        got = dict(kv.split("=") for kv in m.group(2).split())
        # Only what the policy releases: laeq, lamin, lamax and the block count, not L10/L90.
        assert set(got) == {str(key[k]) for k in ("laeq", "lamin", "lamax", "samples")}
        laeq, lamin, lamax = (int(got[str(key[k])]) / 100 for k in ("laeq", "lamin", "lamax"))
        n = int(got[str(key["samples"])])
        assert lamin <= laeq <= lamax and (n == 15 or (i == 0 and 0 < n < 15))  # a minute each
        # Sampled blocks against the continuous LAeq: within a few dB (docs/sensors.md).
        assert abs(laeq - _truth(world, _epoch(m.group(1)))["laeq_db"]) <= 5.0
    for m in air:
        got = dict(kv.split("=") for kv in m.group(2).split())
        names = ("pm1_mean", "pm2_5_mean", "pm10_mean", "pm2_5_max", "pm10_max", "samples")
        assert set(got) == {str(key[k]) for k in names}
        truth = _truth(world, _epoch(m.group(1)))
        pm25 = int(got[str(key["pm2_5_mean"])]) / 10
        assert abs(pm25 - truth["pm2_5_mean"]) <= 0.1 * truth["pm2_5_mean"] + 1.0
        assert int(got[str(key["pm2_5_max"])]) >= int(got[str(key["pm2_5_mean"])])
    # Sealed into the outbox like every other record, and the board stayed in its budget.
    assert (flash / "outbox.log").stat().st_size > 0
    # On a pico-w the TLS stack's buffers share the heap (board tls_heap), allowed on top.
    assert 0 < stats.heap_peak <= b.ram_budget + b.tls_heap
    # Nothing but the released values about sound or dust on the console.
    for x in lines:
        if "noise" in x or "air" in x:
            assert x.startswith(("rel noise", "rel air", "policy ")), x


def test_an_unprovisioned_board_prints_their_bench_lines(tmp_path: Path) -> None:
    b = load_board("pico-w")
    flash = tmp_path / "flash"
    flash.mkdir()
    prepare_flash(b, flash, firmware=paths.FIRMWARE)
    cfg = json.loads((flash / "config.json").read_text())
    cfg.update(sensors=ON, wifi=WIFI)
    (flash / "config.json").write_text(json.dumps(cfg))
    world = make_world(b, "plaza", 1, None)
    emu = EmulatedBoard(b, flash, world=world, seed=1, entry="sensor.app")
    emu.run(duration_us=HOUR // 2 + 60 * US)
    lines = [line for _, line in emu.lines]
    # Their values named by the catalogue (sensor/bench.py), errors counted.
    noise = [x for x in lines if re.match(r"win \S+ noise laeq=\d+ lamin=\d+ .* err=0$", x)]
    air = [x for x in lines if re.match(r"win \S+ air pm1_mean=\d+ pm2_5_mean=\d+ .*", x)]
    assert len(noise) >= 1 and len(air) >= 1, "\n".join(lines[-30:])
    assert not any(x.startswith("rel ") for x in lines)  # bench: nothing is released


@pytest.mark.parametrize("board", ["esp32-devkitc", "pico-w"])
def test_all_seven_streams_with_mqtt_over_tls_stay_in_the_ram_budget(
    board: str, tmp_path: Path
) -> None:
    # The heaviest configuration the framework offers: every stream on, the firmware's own
    # MQTT client over TLS to a real Mosquitto. The engine stops a board whose live heap
    # passes the board's ram_budget (docs/sensors.md "RAM" gives the day's figures).
    from servers import free_port, make_ca, start_mosquitto, stop, tls_listener

    b = load_board(board)
    ca, cert, key = make_ca(tmp_path)
    port = free_port()
    broker = start_mosquitto(tmp_path, *tls_listener(port, ca, cert, key))
    try:
        flash = tmp_path / "flash"
        flash.mkdir()
        up = {"transport": "mqtt", "url": f"mqtts://localhost:{port}", "topic": "t/up"}
        up["ca"] = ca.read_text()
        provision_flash(b, flash, b"\1\2\3\4\1", b"k" * 16, b"i" * 13, wifi=WIFI, sensors=ON,
                        uplink=up)  # fmt: skip
        pol = host.load_policy(paths.ROOT / "policies" / "street-full.json")
        assert set(pol["streams"]) >= {"env", "doorway", "motion", "ble", "noise", "air"}
        (flash / "policy.json").write_bytes(host.canonical(pol))
        world = make_world(b, "plaza", 1, None)
        emu = EmulatedBoard(b, flash, world=world, seed=1, entry="sensor.app")
        stats = emu.run(duration_us=2 * HOUR + 60 * US)  # raises past the budget
    finally:
        stop(broker)
    lines = [line for _, line in emu.lines]
    assert sum(x.startswith("rel noise") for x in lines) >= 7, lines[-20:]
    assert sum(x.startswith("rel air") for x in lines) >= 7
    # On a pico-w the TLS stack's buffers share the heap (board tls_heap), allowed on top.
    assert 0 < stats.heap_peak <= b.ram_budget + b.tls_heap
    # Delivered: the broker acknowledged every frame, so none waits on flash.
    assert not (flash / "outbox.log").exists() or (flash / "outbox.log").stat().st_size <= 8
