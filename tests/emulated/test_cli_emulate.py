"""`atsource emulate` as a user runs it: a simulated day, and one-line errors for mistakes."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from atsource import boardtime, firmware_build, paths
from atsource.boards import load_board


def atsource(*args: str) -> subprocess.CompletedProcess[str]:
    # No wall-clock limit: a simulated run ends by itself, later on a busy machine.
    return subprocess.run(
        [sys.executable, "-m", "atsource.cli", *args], capture_output=True, text=True
    )


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \| (.*)$")


def test_unknown_board_is_one_line_and_exit_2() -> None:
    r = atsource("emulate", "esp8266", "--duration", "1m")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "atsource: error: unknown board 'esp8266' (known boards: esp32-devkitc, pico-w)"
    ]


def test_bad_scenario_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nstart = "2026-06-01T00:00:00Z"\nduration = "1h"\nbogus = 1\n')
    r = atsource("emulate", "pico-w", "--scenario", str(bad))
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("atsource: error: ") and "bogus" in err[0]


def test_missing_scenario_and_bad_duration(tmp_path: Path) -> None:
    r = atsource("emulate", "pico-w", "--scenario", "nowhere")
    assert r.returncode == 2 and "scenario not found: nowhere" in r.stderr
    r = atsource("emulate", "pico-w", "--duration", "soon", "--flash", str(tmp_path))
    assert r.returncode == 2 and "bad duration 'soon'" in r.stderr


def test_json_alone_on_stdout(tmp_path: Path) -> None:
    r = atsource("emulate", "pico-w", "--duration", "20m", "--json", "--flash", str(tmp_path / "f"))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # nothing but the JSON
    assert summary["board"] == "pico-w" and summary["simulated_s"] == 1200
    console = [ln for ln in r.stderr.splitlines() if LINE.match(ln)]
    assert any("atsource: pico-w boot 1" in ln for ln in console), r.stderr


def test_served_board_is_listed_locked_deployable_and_says_how_to_resume(tmp_path: Path) -> None:
    """One `atsource emulate --serial` as a user runs it: `atsource ports` lists it, a second
    emulator on its flash refuses, `deploy --port auto --dry-run` counts the real bytes, and
    after an mpremote command the console says how to resume, which works."""
    env = {**os.environ, "ATSOURCE_RUNTIME_DIR": str(tmp_path / "run")}
    flash = tmp_path / "flash"
    proc = subprocess.Popen(
        [sys.executable, "-m", "atsource.cli", "emulate", "pico-w", "--serial", "--erase"]
        + ["--flash", str(flash), "--speed", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(ln) for ln in proc.stdout or []], daemon=True
    ).start()

    # Board time (boardtime.py) once the board has announced its port: a busy machine
    # stretches the waits by exactly the time the board was kept from running.
    clock = [boardtime.BoardClock(None)]

    def wait_for(text: str, within: float = 60) -> str:
        seen = []
        deadline = clock[0].now() + within
        while clock[0].now() < deadline:
            try:
                ln = lines.get(timeout=0.2)
            except queue.Empty:
                assert proc.poll() is None, "the emulator exited"
                continue
            seen.append(ln)
            if text in ln:
                return ln
        raise AssertionError(f"no {text!r} on the console: {seen[-20:]}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "atsource.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    try:
        pty_path = wait_for("serial: ").split(": ", 1)[1].strip()
        listed = json.loads(run("ports", "--json").stdout)
        assert [(p["port"], p["kind"], p["board"]) for p in listed] == [
            (pty_path, "emulated", "pico-w")
        ]
        clock[0] = boardtime.clock_for(pty_path)  # announced with the port listed above

        second = run("emulate", "pico-w", "--flash", str(flash), "--erase", "--duration", "1m")
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"atsource: error: flash directory {flash} is in use by another emulator "
            f"(pid {proc.pid}): stop it, or give this one its own --flash or --instance"
        ]

        image = firmware_build.build(load_board("pico-w"), paths.FIRMWARE)
        dry = run("deploy", "--dry-run", "--json")  # --port auto: the one board served here
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert plan["port"] == pty_path and plan["dry_run"]
        assert plan["bytes_copied"] == sum(len(d) for d in image.values()) > 0
        assert not (flash / "main.mpy").exists() and not (flash / "main.py").exists()

        assert run("deploy").returncode == 0  # then a soft reset: the firmware runs
        wait_for("atsource: pico-w boot 1")
        subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", pty_path, "ls"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(
            "main: stopped by Ctrl-C; nothing is measured or sent until a reset "
            "(mpremote reset, or Ctrl-D at the >>> prompt)"
        )
        subprocess.run(
            [sys.executable, "-m", "mpremote", "connect", pty_path, "reset"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for("atsource: pico-w boot 2")  # resumed
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert json.loads(run("ports", "--json").stdout) == []  # its runtime file is gone


def test_the_board_gives_the_hosts_reasons_for_a_bad_config(tmp_path: Path) -> None:
    """On the MicroPython VM, the device reads the config provision refuses, and prints the
    very reasons the host gives (one schema: firmware/sensor/config.py)."""
    from atsource import devconfig

    broken = {
        "wifi": {"ssid": "city-iot", "pass": "hunter22"},
        "uplink": {"transport": "carrier-pigeon"},
        "ble": {"scan_ms": 5000},
    }
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps(broken))
    r = atsource("emulate", "pico-w", "--flash", str(flash), "--duration", "1m", "--json")
    assert r.returncode == 0, r.stderr
    said = [
        m.group(2)[len("config: ") : -len(" (ignored)")]
        for m in map(LINE.match, r.stderr.splitlines())
        if m and m.group(2).startswith("config: ")
    ]
    assert said == devconfig.problems(broken)
    assert len(said) == 3


def test_fleet_runs_boards_of_both_kinds_in_parallel() -> None:
    r = atsource("emulate", "--fleet", "3", "--duration", "10m", "--seed", "5", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["boards"] == 3 and out["failed"] == 0 and 1 <= out["workers"] <= 3
    runs = out["runs"]
    assert [x["board"] for x in runs] == ["esp32-devkitc", "pico-w", "esp32-devkitc"]
    assert [x["seed"] for x in runs] == [5, 6, 7]
    assert all(x["simulated_s"] == 600 and x["scenario"] == "residential" for x in runs)
    assert all(0 < x["heap_peak"] <= x["ram_budget"] for x in runs)
    assert out["board_days"] == round(3 * 600 / 86_400, 3)


def test_fleet_refuses_single_board_options() -> None:
    r = atsource("emulate", "--fleet", "2", "--serial")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "atsource: error: --fleet runs the repository firmware on fresh flash: drop --serial"
    ]
    r = atsource("emulate")
    assert r.returncode == 2 and "name the BOARD to emulate" in r.stderr
