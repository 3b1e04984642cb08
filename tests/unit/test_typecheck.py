"""The per-port pyright pass (``atsource.devtools.typecheck``) on a small made-up firmware tree.

Each port's pass must accept portable MicroPython, reject the other port's modules and reject
CPython-only APIs. pyright runs take about a second each, so the tree is checked three times in
all: the clean files on both ports, then everything on each port.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from atsource.devtools import typecheck

ROOT = Path(__file__).resolve().parents[2]
PYRIGHT = ROOT / "node_modules" / ".bin" / "pyright"
STUBS = ROOT / ".stubs"

FILES = {
    # (a) portable: passes both ports; also exercises the tree's own package imports.
    "sensor/__init__.py": "",
    "sensor/util.py": """\
from micropython import const

_ADDR = const(0x76)


def address() -> int:
    return _ADDR
""",
    "portable.py": """\
import time

import machine
from micropython import const

import sensor.util
from sensor import util

LED = const(2)
led = machine.Pin(LED, machine.Pin.OUT)
start = time.ticks_ms()
led.value(1)
print(time.ticks_diff(time.ticks_ms(), start), sensor.util.address(), util.address())
""",
    # Port-specific code behind the `platform` guard is only checked on its own port.
    "guarded.py": """\
from sys import platform

if platform == "esp32":
    import esp32

    print(esp32.raw_temperature())
elif platform == "rp2":
    import rp2

    print(rp2.bootsel_button())
""",
    # (b) ESP32-only: a module and a machine class that rp2 lacks.
    "esp_only.py": """\
import esp32
import machine

print(esp32.raw_temperature())
pad = machine.TouchPad(machine.Pin(4))
""",
    # (c) rp2-only.
    "rp_only.py": """\
import rp2

print(rp2.bootsel_button())
""",
    # (d) CPython-only: a module and a `time` function MicroPython lacks.
    "cpython_only.py": """\
import subprocess
import time

subprocess.run(["true"])
print(time.perf_counter())
""",
}
CLEAN = ["portable.py", "guarded.py", "sensor"]

ERROR_LINE = re.compile(r"^\s+(?P<path>\S+\.py):\d+:\d+ - error: (?P<message>.*)$")

needs_pyright = pytest.mark.skipif(
    not PYRIGHT.is_file()
    or shutil.which("node") is None
    or not all((STUBS / port / "machine.pyi").is_file() for port in typecheck.PORTS),
    reason="pyright (node_modules/.bin/pyright + node) or the .stubs/<port> stub packages "
    "are missing: run `make setup`",
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("firmware")
    for name, text in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def check(*args: str | Path, build_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atsource.devtools.typecheck", "--build-dir", str(build_dir)]
        + [str(a) for a in args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def errors_by_file(stdout: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        m = ERROR_LINE.match(line)
        if m:
            found.setdefault(Path(m["path"]).name, []).append(m["message"])
    return found


@needs_pyright
def test_portable_code_passes_both_ports(tree: Path, tmp_path: Path) -> None:
    proc = check("--root", tree, *(tree / name for name in CLEAN), build_dir=tmp_path)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    # portable.py, guarded.py, sensor/__init__.py, sensor/util.py
    assert proc.stdout.splitlines() == [
        "typecheck esp32: ok (4 files)",
        "typecheck rp2: ok (4 files)",
    ]


@needs_pyright
@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (
            "esp32",
            {
                "rp_only.py": ['Import "rp2" could not be resolved'],
                "cpython_only.py": [
                    'Import "subprocess" could not be resolved',
                    '"perf_counter" is not a known attribute of module "time"',
                ],
            },
        ),
        (
            "rp2",
            {
                "esp_only.py": [
                    'Import "esp32" could not be resolved',
                    '"TouchPad" is not a known attribute of module "machine"',
                ],
                "cpython_only.py": [
                    'Import "subprocess" could not be resolved',
                    '"perf_counter" is not a known attribute of module "time"',
                ],
            },
        ),
    ],
)
def test_each_port_rejects_what_it_lacks(
    tree: Path, tmp_path: Path, port: str, expected: dict[str, list[str]]
) -> None:
    proc = check("--port", port, tree, build_dir=tmp_path)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    n_errors = sum(len(messages) for messages in expected.values())
    head = f"typecheck {port}: FAILED ({n_errors} errors in {len(FILES)} files)\n"
    assert proc.stdout.startswith(head), proc.stdout
    found = errors_by_file(proc.stdout)
    assert sorted(found) == sorted(expected), proc.stdout
    for name, messages in expected.items():
        for message in messages:
            assert any(message in m for m in found[name]), (name, message, proc.stdout)


def test_config_replaces_cpython_typeshed_and_environment(tmp_path: Path) -> None:
    stubs = tmp_path / ".stubs" / "rp2"
    firmware = tmp_path / "firmware"
    config_dir = tmp_path / "build" / "rp2"

    config = typecheck.pyright_config("rp2", stubs, [firmware], firmware, config_dir)

    assert config["typeshedPath"] == config["stubPath"] == str(stubs)
    assert config["include"] == ["../../firmware"]
    assert config["executionEnvironments"] == [{"root": "../../firmware"}]
    assert (config["venvPath"], config["venv"]) == (".", "isolated-env")
    assert config["defineConstant"] == {"platform": "rp2"}
    assert config["reportMissingImports"] == config["reportAttributeAccessIssue"] == "error"
    assert config["reportMissingModuleSource"] == "none"


def test_missing_pyright_is_a_setup_error(tmp_path: Path) -> None:
    proc = check(
        "--pyright", tmp_path / "no-pyright", "--port", "rp2", tmp_path, build_dir=tmp_path
    )

    assert proc.returncode == 2
    assert "pyright not found" in proc.stderr
