"""The emulated board's engine: boot, clock, peripherals, resets, budgets, failure modes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from atsource import paths
from atsource.emulator.api import prepare_flash
from atsource.emulator.engine import EmulatedBoard, EmulatorError
from atsource.errors import UserError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from worlds import ScriptedWorld

START = 1_780_272_000 * 1_000_000  # 2026-06-01T00:00:00Z
MIN = 60_000_000


def run_main(board: str, flash: Path, code: str, world=None, **kw) -> EmulatedBoard:
    (flash / "main.py").write_text(code)
    emu = EmulatedBoard(
        board,
        flash,
        world=world or ScriptedWorld(START),
        start_us=START,
        seed=kw.pop("seed", 1),
        **kw,
    )
    emu.run(duration_us=kw.pop("duration", MIN) if "duration" in kw else MIN)
    return emu


def texts(emu: EmulatedBoard) -> list[str]:
    return [line for _, line in emu.lines]


def test_firmware_boots_and_reports_windows(board_name: str, flash: Path) -> None:
    from atsource.boards import load_board

    prepare_flash(load_board(board_name), flash, firmware=paths.FIRMWARE)
    world = ScriptedWorld(START, env=(23.45, 56.78, 99_876.0))
    emu = EmulatedBoard(board_name, flash, world=world, start_us=START, seed=1, entry="sensor.app")
    stats = emu.run(duration_us=31 * MIN)
    wins = [(t, line) for t, line in emu.lines if line.startswith("win ")]
    # Two 15-minute windows, each closed just after its wall-clock boundary.
    assert [line.split()[2] for _, line in wins] == [
        "env",
        "doorway",
        "motion",
        "ble",
        "health",
    ] * 2
    assert all(
        0 <= t - (START + (1 + i // 5) * 15 * MIN) < 100_000 for i, (t, _) in enumerate(wins)
    )
    env = wins[0][1]
    # Sampled every 30 s from the time the clock was set (about 2 s after boot).
    assert env.startswith("win 2026-06-01T00:00:00Z env t=23.45/23.45/23.45C rh=56.78% p=99876Pa")
    # (a sample landing on the boundary itself may count in either window)
    assert re.search(r" n=(29|30|31) lost=0 err=0$", env), env
    assert f"atsource: {board_name} boot 1 (power)" in texts(emu)
    assert 0 < stats.heap_peak < 65536 and stats.heap_samples >= 4
    # Deployed as .mpy, as on a board; main.py stays source.
    assert (flash / "sensor" / "app.mpy").exists() and not (flash / "sensor" / "app.py").exists()


def test_main_py_entry_runs_the_same_firmware(flash: Path) -> None:
    from atsource.boards import load_board

    prepare_flash(load_board("pico-w"), flash, firmware=paths.FIRMWARE)
    emu = EmulatedBoard("pico-w", flash, world=ScriptedWorld(START), start_us=START, seed=1)
    emu.run(duration_us=16 * MIN)
    assert sum(line.startswith("win 2026-06-01T00:00:00Z env t=20.00/") for line in texts(emu)) == 1
    assert emu.stats.heap_samples == 0  # no top-level returns inside main.py


def test_a_hung_main_loop_is_reset_by_the_watchdog(flash: Path) -> None:
    from atsource.boards import load_board

    prepare_flash(load_board("pico-w"), flash, firmware=paths.FIRMWARE)
    # The firmware's own loop, made to hang once (a driver that never returns).
    (flash / "main.py").write_text(
        "import os\n"
        "from sensor import app, hal\n"
        "a = app.setup()\n"
        "for _ in range(20):\n    hal.idle(a.step())\n"
        "if 'hung' not in os.listdir():\n"
        "    open('hung', 'w').close()\n"
        "    while True:\n        pass\n"
        "while True:\n    hal.idle(a.step())\n"
    )
    emu = EmulatedBoard("pico-w", flash, world=ScriptedWorld(START), start_us=START, seed=1,
                        stall_timeout=2.0)  # fmt: skip
    emu.run(duration_us=20 * MIN)
    assert [r.kind for r in emu.stats.resets] == ["power", "wdt"]
    assert "atsource: pico-w boot 2 (watchdog)" in texts(emu)
    health = [x for x in texts(emu) if " health " in x]
    assert health and "cause=watchdog" in health[-1] and "boots=2" in health[-1]


def test_clock_sleeps_and_rtc(flash: Path) -> None:
    code = (
        "import time, machine\n"
        "t0 = time.ticks_ms(); u0 = time.ticks_us()\n"
        "time.sleep_ms(1500)\n"
        "print('slept', time.ticks_diff(time.ticks_ms(), t0))\n"
        "print('rtc', time.time(), machine.RTC().datetime()[:3])\n"
        "machine.RTC().datetime((2026, 6, 1, 0, 12, 0, 0, 0))\n"
        "time.sleep(2)\n"
        "print('set', time.gmtime()[:6])\n"
    )
    emu = run_main("esp32-devkitc", flash, code)
    out = texts(emu)
    slept = int(next(line for line in out if line.startswith("slept")).split()[1])
    assert 1500 <= slept <= 1502
    # An unpowered esp32 RTC starts at 2000-01-01, the port's epoch: time() counts from there.
    assert "rtc 1 (2000, 1, 1)" in out
    assert "set (2026, 6, 1, 12, 0, 2)" in out


def test_same_seed_same_run_different_seed_differs(flash: Path, tmp_path: Path) -> None:
    code = "import os, random\nprint(os.urandom(8).hex(), random.getrandbits(16))\n"
    runs = []
    for seed, d in ((1, "a"), (1, "b"), (2, "c")):  # same instance name: same identity
        f = tmp_path / d
        f.mkdir()
        emu = run_main("pico-w", f, code, seed=seed, instance="x")
        runs.append(next(line for line in texts(emu) if len(line.split()) == 2))
    assert runs[0] == runs[1] != runs[2]


def test_errno_numbers_are_micropythons(flash: Path) -> None:
    code = (
        "import os, errno\n"
        "try:\n    open('/missing')\n"
        "except OSError as e:\n    print('open', e.errno == errno.ENOENT)\n"
        "os.mkdir('/d')\n"
        "try:\n    os.mkdir('/d')\n"
        "except OSError as e:\n    print('mkdir', e.errno == errno.EEXIST)\n"
        "print(os.listdir('/'))\n"
    )
    out = texts(run_main("pico-w", flash, code))
    assert "open True" in out and "mkdir True" in out
    assert "['main.py', 'd']" in out or "['d', 'main.py']" in out


def test_flash_fills_up_with_enospc(flash: Path) -> None:
    code = (
        "import os, errno\n"
        "f = open('big', 'wb'); n = 0\n"
        "try:\n"
        "    while True:\n        f.write(bytes(4096)); n += 1\n"
        # ENOSPC is 28; MicroPython's errno module has no name for it.
        "except OSError as e:\n    print('full', e.errno == 28, n)\n"
        "f.close()\n"
        "print('statvfs', os.statvfs('/')[3])\n"
    )
    out = texts(run_main("pico-w", flash, code))
    line = next(line for line in out if line.startswith("full"))
    assert line.startswith("full True") and 200 < int(line.split()[2]) <= 212
    assert "statvfs 0" in out


def test_a_full_flash_refuses_new_files_and_the_firmware_copes(flash: Path) -> None:
    # LittleFS needs room for a new file's entry and data: on a full flash creating one is
    # ENOSPC (the counter's reservation writes one), and the outbox makes room by shedding.
    from atsource.boards import load_board

    prepare_flash(load_board("pico-w"), flash, firmware=paths.FIRMWARE)
    code = (
        "import os\n"
        "from sensor import counter, outbox\n"
        "ob = outbox.Outbox('/ob.log', capacity=500)\n"
        "for i in range(40):\n"
        "    ob.append(bytes([i]) * 200)\n"
        "f = open('fill', 'wb')\n"
        "try:\n"
        "    while True:\n"
        "        f.write(bytes(4096))\n"
        "except OSError as e:\n"
        "    print('full', e.errno)\n"
        "f.close()\n"
        "c = counter.Counter('/cnt', reserve=4)\n"
        "try:\n"
        "    c.take()\n"
        "    print('counter took')\n"
        "except OSError as e:\n"
        "    print('counter', e.errno)\n"
        "r = [ob.append(b'x' * 200) for _ in range(30)]\n"
        "print('append', r[-1], ob.dropped > 0)\n"
        "print('shed', ob.shed())\n"
        "os.remove('fill')\n"
        "print('after', c.take())\n"
    )
    out = texts(run_main("pico-w", flash, code))
    assert "full 28" in out
    assert "counter 28" in out, out  # no ceiling could be reserved: nothing is sealed
    assert "after 0" in out
    append = next(line for line in out if line.startswith("append"))
    assert append.endswith("True True"), out  # room was made by dropping the oldest, counted
    assert "shed True" in out


def test_i2c_nack_errno_per_port(flash: Path) -> None:
    code = (
        "import machine\ni2c = machine.I2C(0)\nprint('scan', i2c.scan())\n"
        "try:\n    i2c.readfrom_mem(0x50, 0, 1)\n"
        "except OSError as e:\n    print('nack', e.errno)\n"
    )
    assert "nack 19" in texts(run_main("esp32-devkitc", flash, code))
    assert "nack 5" in texts(run_main("pico-w", flash, code))
    assert "scan [118]" in texts(run_main("pico-w", flash, code))


def test_pin_irq_runs_at_the_event_time(flash: Path) -> None:
    events = [("pin", START + 10_000_000 + i * 1_000_000, 14, i % 2) for i in range(6)]
    code = (
        "import machine, time\n"
        "t0 = time.ticks_ms(); seen = []\n"
        "p = machine.Pin(14, machine.Pin.IN)\n"
        "p.irq(lambda pin: seen.append((time.ticks_diff(time.ticks_ms(), t0), pin.value())),"
        " machine.Pin.IRQ_FALLING)\n"
        "time.sleep(30)\nprint('seen', seen)\n"
    )
    out = texts(run_main("pico-w", flash, code, world=ScriptedWorld(START, events)))
    # Level starts 1 (idle high); falling edges at 10 s (0), 12 s, 14 s.
    assert "seen [(10000, 0), (12000, 0), (14000, 0)]" in out


def test_ble_scan_delivers_adverts_then_done(flash: Path) -> None:
    addr = bytes.fromhex("c0ffee123456")
    events = [
        ("adv", START + 500_000 * k, 1, addr, 0, -60 - k, b"\x02\x01\x06") for k in range(1, 12)
    ]
    code = (
        "import bluetooth, time\n"
        "got = []\n"
        "def irq(ev, data):\n"
        "    if ev == 5:\n"
        "        t, a, adv, rssi, d = data\n"
        "        got.append((t, bytes(a).hex(), rssi, bytes(d)))\n"
        "    elif ev == 6:\n"
        "        got.append('done')\n"
        "ble = bluetooth.BLE(); ble.active(True); ble.irq(irq)\n"
        "ble.gap_scan(3000, 30000, 30000)\n"
        "time.sleep(10)\nprint(len(got), got[0], got[-1])\n"
    )
    out = texts(run_main("esp32-devkitc", flash, code, world=ScriptedWorld(START, events)))
    # Adverts at 0.5 s .. 2.5 s fall inside the 3 s scan; then the scan ends.
    assert "6 (1, 'c0ffee123456', -61, b'\\x02\\x01\\x06') done" in out


@pytest.mark.parametrize("board_name", ["esp32-devkitc", "pico-w"])
def test_scan_results_arrive_as_the_ports_give_them(board_name: str, flash: Path) -> None:
    # Adverts cross from the host in packed runs; the handler must still get, per report and at
    # its own time, (addr_type, addr, adv_type, rssi, adv_data) with read-only memoryviews
    # (extmod/modbluetooth.c), signed rssi, and the data's own length, whatever the batch.
    a1, a2 = bytes.fromhex("c0ffee123456"), bytes.fromhex("0102030405f6")
    events = [
        ("adv", START + 1_000_000 + 250 * k, k % 2, a1 if k % 2 else a2, 4 * (k % 2), -128 + k,
         bytes(range(k % 32)))
        for k in range(200)
    ]  # fmt: skip
    events.append(("adv", START + 2_500_000, 0, a2, 0, 127, b""))
    code = (
        "import bluetooth, time\n"
        "got = []\n"
        "def irq(ev, data):\n"
        "    if ev == 5:\n"
        "        t, a, kind, rssi, d = data\n"
        "        try:\n"
        "            a[0] = 0\n"
        "            ro = False\n"
        "        except TypeError:\n"
        "            ro = True\n"
        "        mv = type(a) is memoryview\n"
        "        got.append((time.ticks_us(), t, mv, bytes(a).hex(), kind, rssi,\n"
        "                    type(d) is memoryview and ro, bytes(d)))\n"
        "ble = bluetooth.BLE(); ble.active(True); ble.irq(irq)\n"
        "ble.gap_scan(3000, 30000, 30000)\n"
        "t0 = time.ticks_us()\n"
        "time.sleep(5)\n"
        "for g in got:\n"
        "    print('adv', time.ticks_diff(g[0], t0) // 250, repr(g[1:]))\n"
    )
    out = [t for t in texts(run_main(board_name, flash, code, world=ScriptedWorld(START, events)))
           if t.startswith("adv ")]  # fmt: skip
    want = [
        (k, (k % 2, True, (a1 if k % 2 else a2).hex(), 4 * (k % 2), -128 + k, True,
             bytes(range(k % 32))))
        for k in range(200)
    ] + [(6000, (0, True, a2.hex(), 0, 127, True, b""))]  # fmt: skip
    got = [(int(t.split()[1]), t.split(" ", 2)[2]) for t in out]
    assert len(got) == len(want)
    # Each handler runs at its report's time (the scan began at t0, a few calls before 1 s).
    base = got[0][0]
    assert [g[0] - base for g in got] == [k for k, _ in want]
    assert [g[1] for g in got] == [repr(w) for _, w in want]


def test_cryptolib_is_real_aes_in_ecb_and_cbc_only(flash: Path) -> None:
    key = bytes(range(16))
    iv = bytes(range(16, 32))
    data = hashlib.sha256(b"x").digest()
    code = (
        "import cryptolib\n"
        f"k = {key!r}; iv = {iv!r}; d = {data!r}\n"
        "print('ecb', cryptolib.aes(k, 1).encrypt(d).hex())\n"
        "c = cryptolib.aes(k, 2, iv)\n"
        "print('cbc', (c.encrypt(d[:16]) + c.encrypt(d[16:])).hex())\n"
        "try:\n    cryptolib.aes(k, 6)\nexcept ValueError:\n    print('ctr refused')\n"
    )
    out = texts(run_main("pico-w", flash, code))
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(data)
    cbc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(data)
    assert f"ecb {ecb.hex()}" in out
    assert f"cbc {cbc.hex()}" in out
    assert "ctr refused" in out


def test_heap_over_budget_fails_the_run_clearly(flash: Path) -> None:
    (flash / "hog.py").write_text(
        "class S:\n    def __init__(self):\n        self.keep = []\n"
        "    def step(self):\n        self.keep.append(bytearray(8192))\n        return 1000\n"
        "def setup():\n    return S()\n"
    )
    emu = EmulatedBoard(
        "esp32-devkitc", flash, world=ScriptedWorld(START), start_us=START, entry="hog"
    )
    with pytest.raises(
        EmulatorError,
        match=r"firmware heap \d+ bytes exceeds the board's RAM "
        r"budget of 65536 bytes",
    ):
        emu.run(duration_us=MIN)


def test_exception_in_firmware_prints_traceback_and_board_idles(flash: Path) -> None:
    emu = run_main("pico-w", flash, "print('start')\nx = 1 // 0\n")
    out = texts(emu)
    assert "ZeroDivisionError: divide by zero" in out
    assert any('Type "help()"' in line for line in out)


def test_busy_loop_is_reported_not_hung(flash: Path) -> None:
    with pytest.raises(EmulatorError, match="firmware stalled"):
        run_main("pico-w", flash, "while True:\n    pass\n", stall_timeout=2.0)


def test_watchdog_resets_a_hung_loop(flash: Path) -> None:
    code = (
        "import machine, time\n"
        "print('cause', machine.reset_cause())\n"
        "if machine.reset_cause() != machine.WDT_RESET:\n"
        "    wdt = machine.WDT(timeout=2000)\n"
        "    while True:\n        time.sleep_ms(500)  # never feeds\n"
    )
    emu = run_main("esp32-devkitc", flash, code)
    assert [r.kind for r in emu.stats.resets] == ["power", "wdt"]
    assert emu.stats.resets[1].t_us == START + 2_000_000
    assert "cause 3" in texts(emu)


def test_watchdog_on_a_loop_that_never_yields(flash: Path) -> None:
    code = (
        "import machine\n"
        "if machine.reset_cause() != machine.WDT_RESET:\n"
        "    machine.WDT(timeout=1000)\n    while True:\n        pass\n"
        "print('recovered', machine.reset_cause())\n"
    )
    emu = run_main("pico-w", flash, code, stall_timeout=2.0)
    assert "recovered 3" in texts(emu)


def test_power_cut_loses_unflushed_data_only(flash: Path) -> None:
    code = (
        "import os, time\n"
        "if 'kept' not in os.listdir():\n"
        "    f = open('kept', 'w'); f.write('durable'); f.close()\n"
        "    g = open('flushed', 'w'); g.write('yes'); g.flush()\n"
        "    h = open('lost', 'w'); h.write('never closed')\n"
        "    time.sleep(60)\n"
        "else:\n"
        "    print('after cut', sorted(os.listdir()), open('flushed').read(), "
        "open('lost').read() == '')\n"
    )
    world = ScriptedWorld(START, [("power", START + 30_000_000, 5_000_000)])
    emu = run_main("pico-w", flash, code, world=world)
    assert [r.kind for r in emu.stats.resets] == ["power", "power"]
    assert emu.stats.resets[1].t_us == START + 35_000_000
    assert "after cut ['flushed', 'kept', 'lost', 'main.py'] yes True" in texts(emu)


def test_bad_board_name_is_one_clear_error(flash: Path) -> None:
    with pytest.raises(UserError, match=r"unknown board 'esp8266' \(known boards: "):
        EmulatedBoard("esp8266", flash)
