"""Finding boards: USB boards through pyserial's list_ports (patched at that boundary: there is
no USB board here), emulated boards through the runtime files `atsource emulate --serial`
writes; `--port auto`; `flash` naming a port that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from atsource import ports
from atsource.cli import main
from atsource.errors import DeviceError, UserError
from click.testing import CliRunner
from serial.tools import list_ports, list_ports_common


def usb(device: str, vid: int | None, pid: int | None) -> list_ports_common.ListPortInfo:
    p = list_ports_common.ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid = vid, pid
    return p


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "run"
    monkeypatch.setenv(ports.RUNTIME_ENV, str(d))
    return d


@pytest.fixture
def comports(monkeypatch: pytest.MonkeyPatch) -> mock.Mock:
    m = mock.Mock(return_value=[])
    monkeypatch.setattr(list_ports, "comports", m)
    return m


def test_usb_boards_by_the_ids_of_the_board_definitions(runtime: Path, comports: mock.Mock) -> None:
    comports.return_value = [
        usb("/dev/ttyS0", None, None),  # a built-in UART: not a board
        usb("/dev/ttyUSB0", 4292, 60000),  # CP2102: esp32-devkitc
        usb("/dev/ttyACM0", 11914, 5),  # Pico W running MicroPython
        usb("/dev/ttyACM1", 0x1234, 0x5678),  # something else on USB
        usb("/dev/ttyACM2", 11914, 3),  # a Pico in BOOTSEL
    ]
    found = ports.all_ports()
    assert [(p.port, p.kind, p.board, p.detail) for p in found] == [
        ("/dev/ttyUSB0", "usb", "esp32-devkitc", "10c4:ea60"),
        ("/dev/ttyACM0", "usb", "pico-w", "2e8a:0005"),
        ("/dev/ttyACM2", "bootsel", "pico-w", "2e8a:0003"),
    ]
    assert comports.call_args_list == [mock.call()]  # one enumeration, default arguments
    # Two boards with a REPL: auto must not guess.
    with pytest.raises(UserError, match=r"^2 boards found \(/dev/ttyUSB0 \(esp32-devkitc\), "):
        ports.resolve("auto")


def test_auto_is_the_one_board_and_a_named_port_is_kept(runtime: Path, comports: mock.Mock) -> None:
    comports.return_value = [usb("/dev/ttyACM0", 11914, 5), usb("/dev/ttyACM2", 11914, 3)]
    assert ports.resolve("auto") == "/dev/ttyACM0"  # the BOOTSEL one has no REPL
    assert ports.resolve(None) == "/dev/ttyACM0"
    assert ports.resolve("/dev/pts/9") == "/dev/pts/9"
    assert comports.call_count == 2  # a named port is not looked up
    comports.return_value = []
    with pytest.raises(DeviceError, match="^no board found"):
        ports.resolve("auto")


def test_emulated_boards_announce_themselves(runtime: Path, comports: mock.Mock) -> None:
    pty = os.ttyname(os.openpty()[1])
    with ports.announce("pico-w", "bench", pty, "socket://127.0.0.1:4000") as f:
        assert f.parent == runtime
        (found,) = ports.all_ports()
        assert found == ports.FoundPort(
            pty, "emulated", "pico-w", "bench", "socket://127.0.0.1:4000"
        )
        assert ports.resolve("auto") == pty
        r = CliRunner().invoke(main, ["ports", "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout) == [found.as_dict()]
    assert ports.all_ports() == [] and not f.exists()


def test_a_killed_emulator_leaves_nothing_listed(runtime: Path, comports: mock.Mock) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    runtime.mkdir()
    stale = runtime / "emulated-1.json"
    stale.write_text(
        json.dumps(
            {
                "pid": int(dead.stdout),
                "board": "pico-w",
                "instance": "x",
                "pty": "/dev/null",
                "url": None,
            }
        )
    )
    assert ports.all_ports() == []
    assert not stale.exists()


def test_ports_command_with_nothing_attached(runtime: Path, comports: mock.Mock) -> None:
    r = CliRunner().invoke(main, ["ports"])
    assert r.exit_code == 0 and r.stdout.startswith("no boards found")


@pytest.mark.parametrize(
    ("args", "then"),
    [
        (["deploy", "--dry-run"], (3, "no such port: /dev/ttyACM7-absent")),
        (["provision", "--site", "plaza"], (3, "no such port: /dev/ttyACM7-absent")),
        # The port is resolved first, then the registry is opened: there is none (only
        # provisioning creates one).
        (["keys", "rotate", "dev-000001"], (2, "no registry at ")),
    ],
)
def test_every_port_command_defaults_to_auto(
    args: list[str], then: tuple[int, str], runtime: Path, comports: mock.Mock, tmp_path: Path
) -> None:
    env = {
        "ATSOURCE_REGISTRY": str(tmp_path / "r.db"),
        "ATSOURCE_REGISTRY_KEY_FILE": str(tmp_path / "r.key"),
    }
    r = CliRunner().invoke(main, args, env=env)
    assert r.exit_code == 3, r.output
    assert r.stderr.startswith("atsource: error: no board found"), r.stderr
    assert comports.called
    comports.reset_mock()
    comports.return_value = [usb("/dev/ttyACM7-absent", 11914, 5)]
    r = CliRunner().invoke(main, [*args, "--port", "auto"], env=env)
    # The one board found is used: here it is gone by the time it is opened.
    assert r.exit_code == then[0]
    assert r.stderr.splitlines()[-1].startswith(f"atsource: error: {then[1]}")
    assert comports.call_args_list == [mock.call()]


def test_flash_names_a_missing_port(tmp_path: Path, comports: mock.Mock) -> None:
    image = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    r = CliRunner().invoke(
        main, ["flash", "--port", str(tmp_path / "ttyUSB0"), "--firmware", str(image)]
    )
    assert r.exit_code == 3
    assert r.stderr.splitlines() == [
        f"atsource: error: no such port: {tmp_path / 'ttyUSB0'} (is the board plugged in? "
        "see `ls /dev/tty*`)"
    ]
