"""The emulated boards follow their ports, not the VM (docs/emulator.md, "Per-port truth").

Each expectation cites where the port does it in MicroPython 1.29's source, so a test here
fails when the emulator drifts from a real board, not when it drifts from our own guess."""

from __future__ import annotations

from pathlib import Path

import pytest
from atsource.emulator.engine import EmulatedBoard
from worlds import ScriptedWorld

START = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z

# (epoch year, time() right after power-on, the RTC's power-on date)
# esp32: MicroPython's default 2000 epoch; the RTC starts at 0 (ports/esp32/modtime.c).
# rp2: MICROPY_EPOCH_IS_1970 (ports/rp2/mpconfigport.h); main.c starts the AON timer at
# 2021-01-01.
PORTS = {
    "esp32-devkitc": (2000, 0, (2000, 1, 1)),
    "pico-w": (1970, 1_609_459_200, (2021, 1, 1)),
}


def _run(board: str, flash: Path, code: str) -> list[str]:
    (flash / "main.py").write_text(code)
    emu = EmulatedBoard(board, flash, world=ScriptedWorld(START), start_us=START, seed=1)
    emu.run(duration_us=10_000_000)
    return [line for _, line in emu.lines]


def _value(lines: list[str], key: str) -> str:
    for line in lines:
        if line.startswith(key + " "):
            return line[len(key) + 1 :]
    raise AssertionError(f"no '{key}' line in {lines}")


def test_epoch_and_rtc_power_on_follow_the_port(board_name: str, flash: Path) -> None:
    code = (
        "import time, machine\n"
        "print('epoch', time.gmtime(0)[0])\n"
        "print('now', time.time())\n"
        "print('date', machine.RTC().datetime()[:3])\n"
        # Setting the RTC to a calendar date reads back as that date, in the port's epoch.
        "machine.RTC().datetime((2026, 6, 1, 0, 12, 0, 0, 0))\n"
        "print('set', time.time(), time.gmtime()[:6], time.mktime(time.gmtime()) == time.time())\n"
        "print('ns', time.time_ns() // 1000000000 == time.time())\n"
    )
    year, now, date = PORTS[board_name]
    lines = _run(board_name, flash, code)
    assert _value(lines, "epoch") == str(year)
    assert abs(int(_value(lines, "now")) - now) <= 1
    assert _value(lines, "date") == str(date)
    unix = 1_780_315_200  # 2026-06-01T12:00:00Z
    since_epoch = unix - (946_684_800 if year == 2000 else 0)
    t, rest = _value(lines, "set").split(" ", 1)
    assert int(t) == since_epoch
    assert rest == "(2026, 6, 1, 12, 0, 0) True"
    assert _value(lines, "ns") == "True"


def test_no_shim_shows_through(board_name: str, flash: Path) -> None:
    code = (
        "import micropython, gc, os, time, utime, uos, sys\n"
        "print('repr', repr(micropython), repr(time), repr(os))\n"
        "print('ringio', hasattr(micropython, 'RingIO'))\n"
        "print('utime', utime is time, uos is os)\n"
        # utime is the board's clock: the same virtual ticks as time (py/builtinimport.c).
        "a = utime.ticks_ms(); time.sleep_ms(5000); b = utime.ticks_ms()\n"
        "print('slept', time.ticks_diff(b, a) >= 5000 and time.ticks_diff(b, a) < 5010)\n"
        "gc.threshold(4096)\n"
        "print('threshold', gc.threshold())\n"
        "try:\n"
        "    os.urandom(-1)\n"
        "    print('urandom no error')\n"
        "except ValueError:\n"
        "    print('urandom ValueError')\n"
    )
    lines = _run(board_name, flash, code)
    assert _value(lines, "repr") == "<module 'micropython'> <module 'time'> <module 'os'>"
    assert _value(lines, "ringio") == "True"
    assert _value(lines, "utime") == "True True"
    assert _value(lines, "slept") == "True"
    assert _value(lines, "threshold") == "4096"  # py/modgc.c returns what was set
    assert _value(lines, "urandom") == "ValueError"  # extmod/modos.c: n < 0


@pytest.mark.parametrize("board", ["esp32-devkitc", "pico-w"])
def test_littlefs_semantics(board: str, flash: Path) -> None:
    # Both ports mount LittleFS v2 (extmod/vfs_lfsx.c): remove() takes an empty directory,
    # open() of a directory is EISDIR, ilistdir() gives (name, type, inode, size).
    code = (
        "import os, errno\n"
        "os.mkdir('d')\n"
        "with open('f.bin', 'wb') as f:\n"
        "    f.write(b'x' * 1234)\n"
        "print('ilist', sorted(t for t in os.ilistdir('/') if t[0] in ('d', 'f.bin')))\n"
        "try:\n"
        "    open('d')\n"
        "    print('open no error')\n"
        "except OSError as e:\n"
        "    print('open', e.errno == errno.EISDIR)\n"
        "os.mkdir('d/sub')\n"
        "try:\n"
        "    os.remove('d')\n"
        "    print('remove nonempty no error')\n"
        "except OSError as e:\n"
        "    print('remove nonempty', e.errno)\n"
        "os.remove('d/sub')\n"
        "os.remove('d')\n"
        "print('gone', 'd' in os.listdir('/'))\n"
    )
    lines = _run(board, flash, code)
    assert _value(lines, "ilist") == "[('d', 16384, 0, 0), ('f.bin', 32768, 0, 1234)]"
    assert _value(lines, "open") == "True"
    assert _value(lines, "remove nonempty") == "39"  # ENOTEMPTY, MicroPython's number
    assert _value(lines, "gone") == "False"


def test_released_windows_carry_unix_time_on_both_epochs(board_name: str, flash: Path) -> None:
    # A provisioned board of each port, its real epoch (esp32 2000, rp2 1970), clock set by NTP
    # over the emulated Wi-Fi: every record's window start is the true Unix time of its window.

    from atsource import frame as rx
    from atsource.boards import load_board
    from atsource.emulator.api import make_world
    from atsource.keys import derive, make_kid
    from provisioned import provision_flash

    kid = make_kid(5, 1)
    key, iv = derive(bytes(range(16)), kid)
    b = load_board(board_name)
    provision_flash(b, flash, kid, key, iv)
    world = make_world(b, "smoke", 1, None)
    sent: list[bytes] = []
    emu = EmulatedBoard(
        b, flash, world=world, start_us=world.start_us, seed=1,
        on_frame=lambda f: sent.append(f) is None,
    )  # fmt: skip
    emu.run(duration_us=40 * 60 * 1_000_000)
    entry = rx.KeyEntry(key, iv)
    records = [rx.parse_and_open(f, lambda k, e=entry: e).record for f in sent]
    windows = [r for r in records if r.get(1)]  # the self-test record has no window
    assert len(windows) >= 4, [line for _, line in emu.lines][:20]
    t0, t1 = world.start_us // 1_000_000, emu.now_us // 1_000_000
    for r in windows:
        start, length = r[0], r[1]
        assert start % length == 0
        assert t0 - length <= start and start + length <= t1, (start, t0, t1)


def test_static_peripherals_are_the_same_object(board_name: str, flash: Path) -> None:
    # Pins, hardware I2C buses, the watchdog and the Wi-Fi interfaces are static objects on
    # both ports (ports/esp32/machine_pin.c and ports/rp2/machine_pin.c machine_pin_obj_table;
    # machine_hw_i2c_obj / machine_i2c_obj; wdt_default / machine_wdt; wlan_sta_obj /
    # network_cyw43_wl_sta): making one again returns it, state and all, and costs the
    # firmware no heap. A bit-banged SoftI2C is a heap object.
    sda, scl = (21, 22) if board_name == "esp32-devkitc" else (4, 5)
    code = (
        "import machine, network\n"
        "p = machine.Pin(13, machine.Pin.IN)\n"
        "p.irq(lambda x: None, machine.Pin.IRQ_RISING)\n"
        "print('pin', machine.Pin(13) is p, machine.Pin(13, machine.Pin.IN) is p)\n"
        f"a = machine.I2C(0, scl=machine.Pin({scl}), sda=machine.Pin({sda}))\n"
        f"print('i2c', machine.I2C(0, scl=machine.Pin({scl}), sda=machine.Pin({sda})) is a)\n"
        f"s = machine.SoftI2C(scl=machine.Pin({scl}), sda=machine.Pin({sda}))\n"
        f"print('soft', s is machine.SoftI2C(scl=machine.Pin({scl}), sda=machine.Pin({sda})))\n"
        "w = machine.WDT(timeout=8000)\n"
        "print('wdt', machine.WDT(timeout=8000) is w)\n"
        "n = network.WLAN(network.STA_IF)\n"
        "n.active(True)\n"
        "print('wlan', network.WLAN(network.STA_IF) is n, n.active())\n"
        "try:\n"
        "    machine.Pin(99)\n"
        "except ValueError as e:\n"
        "    print('bad', e)\n"
    )
    lines = _run(board_name, flash, code)
    assert _value(lines, "pin") == "True True"
    assert _value(lines, "i2c") == "True"
    assert _value(lines, "soft") == "False"
    assert _value(lines, "wdt") == "True"
    assert _value(lines, "wlan") == "True True"
    assert _value(lines, "bad") == "invalid pin"
