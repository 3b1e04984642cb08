"""config.json: one schema (firmware/sensor/config.py) read by the device at boot and by the
host before provisioning, with the same reasons on both sides; `provision` refuses a bad config
before touching the board or the registry (exit 2, one line per problem)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from atsource import devconfig
from atsource.cli import main
from click.testing import CliRunner
from sensor import config as dev

# The mistakes of issue 18: the Wi-Fi key under the wrong name, a transport that does not exist.
BROKEN = {
    "wifi": {"ssid": "city-iot", "pass": "hunter22"},
    "uplink": {"transport": "carrier-pigeon"},
}


def _device_reasons(tmp_path: Path, obj: object) -> list[str]:
    f = tmp_path / "config.json"
    f.write_text(json.dumps(obj))
    lines: list[str] = []
    dev.load(str(f), log=lines.append)
    assert all(ln.startswith("config: ") and ln.endswith(" (ignored)") for ln in lines), lines
    return [ln[len("config: ") : -len(" (ignored)")] for ln in lines]


def test_the_device_reports_the_issue_18_mistakes(tmp_path: Path) -> None:
    reasons = _device_reasons(tmp_path, BROKEN)
    assert reasons == [
        "wifi.pass: unknown key (the Wi-Fi settings are ssid and key)",
        "uplink.transport: expected one of hostlink, http, mqtt, not carrier-pigeon",
    ]
    cfg = dev.check(BROKEN)[0]
    assert cfg["wifi"] == {"ssid": "city-iot", "key": ""}  # the bad key ignored, the ssid kept
    assert cfg["uplink"]["transport"] == "hostlink"  # the default: frames wait in the outbox


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"colour": "red"}, "colour: unknown key"),
        ({"ble": {"scan_ms": 5000}}, "ble.scan_ms: unknown key"),
        ({"uplink": {"transport": "mqtt", "url": "http://b:80"}}, "uplink.url: the mqtt transport"),
        ({"uplink": {"transport": "mqtt"}}, "uplink.url: the mqtt transport needs"),
        ({"uplink": {"transport": "http", "url": "mqtt://b"}}, "uplink.url: the http transport"),
        ({"uplink": {"transport": "mqtt", "url": "mqtt://:1883"}}, "uplink.url: the mqtt"),
        ({"uplink": {"transport": "mqtt", "url": "mqtt://b:99999"}}, "uplink.url: bad port"),
        ({"wifi": {"key": "12345678"}}, "wifi.ssid: expected the network name"),
        ({"wifi": {"ssid": "x", "key": "short"}}, "wifi.key: expected"),
        ({"wifi": "city-iot"}, "wifi: expected null or an object"),
        ({"sensors": {"ble": "yes"}}, "sensors.ble: expected true or false"),
        ({"env": {"osrs": 9}}, "env.osrs: expected an integer 1..5"),
        ({"v": 2}, "v: expected 1"),
        ({"uplink": 5}, "uplink: expected an object"),
    ],
)
def test_each_mistake_has_one_reason(tmp_path: Path, obj: dict, reason: str) -> None:
    reasons = _device_reasons(tmp_path, obj)
    assert len(reasons) == 1 and reasons[0].startswith(reason), reasons
    assert devconfig.problems(obj) == reasons


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"wifi": {"ssid": "atsource-emulated", "key": ""}},
        {"wifi": None},
        {
            "wifi": {"ssid": "city-iot", "key": "correct horse"},
            "uplink": {"transport": "mqtt", "url": "mqtts://broker.local:8883", "topic": "a/up"},
        },
        {"uplink": {"transport": "http", "url": "https://u:p@ingest.example/up"}},
        {"uplink": {"transport": "hostlink"}, "sensors": {"ble": False}, "env": {"osrs": 2}},
    ],
)
def test_good_configs_pass_on_both_sides(tmp_path: Path, obj: dict) -> None:
    assert _device_reasons(tmp_path, obj) == []
    assert devconfig.problems(obj) == []


def test_the_host_reads_the_device_file_itself() -> None:
    # Not a copy kept in step: the shim's module is loaded from firmware/sensor/config.py.
    assert Path(devconfig.device_module().__file__ or "").resolve() == Path(dev.__file__).resolve()
    assert devconfig.device_module().DEFAULTS == dev.DEFAULTS


def test_provision_refuses_a_bad_config_before_anything(tmp_path: Path) -> None:
    cfg = tmp_path / "site.json"
    cfg.write_text(json.dumps(BROKEN))
    reg = tmp_path / "registry.db"
    env = {"ATSOURCE_REGISTRY_KEY_FILE": str(tmp_path / "registry.key")}
    for args in (["--port", "/dev/ttyUSB-nothing-here"], ["--batch"]):
        r = CliRunner().invoke(
            main,
            ["provision", *args, "--site", "plaza-south", "--config", str(cfg)]
            + ["--registry", str(reg)],
            env=env,
        )
        # Exit 2 (a user mistake), not 3 (no such port): refused before the port is opened.
        assert r.exit_code == 2, r.output
        assert r.stderr.splitlines() == [
            f"atsource: error: {cfg}: {reason}" for reason in _device_reasons(tmp_path, BROKEN)
        ]
        assert "Traceback" not in r.output
        assert not reg.exists()  # the registry was not even opened
