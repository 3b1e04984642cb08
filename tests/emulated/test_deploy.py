"""`atsource deploy` (and the device wrapper under it) against emulated boards through their
serial port, with the real mpremote transport."""

from __future__ import annotations

import json
import os
import shutil
import struct
import threading
from pathlib import Path

import pytest
import serial
from atsource import firmware_build, paths
from atsource.boards import load_board
from atsource.cli import main
from atsource.deploy import deploy
from atsource.device import Device
from atsource.emulator.api import serve_board
from atsource.errors import DeviceError
from click.testing import CliRunner


def _src(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(paths.FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__"))
    return src


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_deploy_empty_again_one_change_and_removal(flash: Path, tmp_path: Path) -> None:
    src = _src(tmp_path)
    board = load_board("pico-w")
    image = firmware_build.build(board, src)
    with serve_board("pico-w", flash) as b:
        # Data files the firmware and provisioning own: a deploy never touches them.
        (flash / "counter").write_bytes(b"CTR")
        (flash / "identity.json").write_text("{}")

        code, out, err = _run("deploy", "--port", b.port, "--firmware", str(src), "--json")
        assert code == 0, err
        first = json.loads(out)
        assert first["board"] == "pico-w"  # detected from what the board reports
        assert sorted(first["copied"]) == sorted("/" + p for p in image)
        for rel, data in image.items():
            assert (flash / rel).read_bytes() == data
        manifest = json.loads((flash / "manifest.json").read_text())
        assert set(manifest["files"]) == {"/" + p for p in image}

        # Again: nothing copied, nothing removed, the manifest untouched.
        before = (flash / "manifest.json").read_bytes()
        again = deploy(b.port, src=src)
        assert again.copied == [] and again.removed == [] and again.unchanged == len(image)
        assert not again.manifest_written
        assert (flash / "manifest.json").read_bytes() == before

        # One source file changed: exactly its .mpy is copied.
        with open(src / "sensor" / "window.py", "a") as f:
            f.write("\n_DEPLOY_TEST = 1\n")
        one = deploy(b.port, src=src)
        assert one.copied == ["/sensor/window.mpy"] and one.removed == []
        assert (flash / "sensor" / "window.mpy").read_bytes() == firmware_build.build(board, src)[
            "sensor/window.mpy"
        ]

        # A file gone from the tree is removed from the board; a stale .py that would shadow
        # its .mpy goes too; the dry run changes nothing.
        (src / "sensor" / "doorway.py").unlink()
        (flash / "sensor" / "cbor.py").write_text("raise ImportError('stale')\n")
        code, out, _ = _run("deploy", "--port", b.port, "--firmware", str(src), "--dry-run")
        assert code == 0
        assert "remove /sensor/doorway.mpy" in out and "remove /sensor/cbor.py" in out
        assert (flash / "sensor" / "doorway.mpy").exists()
        gone = deploy(b.port, src=src)
        assert gone.copied == [] and gone.removed == ["/sensor/cbor.py", "/sensor/doorway.mpy"]
        assert not (flash / "sensor" / "doorway.mpy").exists()
        assert not (flash / "sensor" / "cbor.py").exists()
        assert (
            "/sensor/doorway.mpy" not in json.loads((flash / "manifest.json").read_text())["files"]
        )
        assert (flash / "counter").read_bytes() == b"CTR"
        assert (flash / "identity.json").read_text() == "{}"
        assert not any(p.name.endswith(".new") for p in flash.rglob("*"))


def test_interrupted_deploy_is_finished_by_the_next(flash: Path, tmp_path: Path) -> None:
    src = _src(tmp_path)
    with serve_board("esp32-devkitc", flash) as b:

        class CutAfterTwoFiles:
            n = 0

            def start(self, total_bytes: int, files: int) -> None:
                pass

            def file(self, path: str) -> None:
                self.n += 1
                if self.n == 3:
                    b.power_cut(0.2)

            def advance(self, nbytes: int) -> None:
                pass

        boots = b.boots
        with pytest.raises(DeviceError):
            deploy(b.port, src=src, reporter=CutAfterTwoFiles())
        assert not (flash / "manifest.json").exists()
        b.wait_boot(boots)  # power back (board time, however busy the machine)
        done = deploy(b.port, src=src)
        assert 0 < len(done.copied) < len(firmware_build.build(load_board("esp32-devkitc"), src))
        assert deploy(b.port, src=src).copied == []
        assert not any(p.name.endswith(".new") for p in flash.rglob("*"))


def test_no_space_on_the_device(flash: Path, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    (src / "blob.txt").write_bytes(b"x" * 900_000)  # the Pico W's file system is 848 KB
    with serve_board("pico-w", flash) as b:
        code, _, err = _run("deploy", "--port", b.port, "--firmware", str(src))
    assert code == 3
    assert "no space on the device" in err and err.count("\n") == 1
    assert not (flash / "blob.txt").exists()


def test_port_errors_are_one_line(flash: Path, tmp_path: Path) -> None:
    code, _, err = _run("deploy", "--port", "/dev/ttyNOPE0")
    assert code == 3 and "no such port: /dev/ttyNOPE0" in err and err.count("\n") == 1

    with serve_board("pico-w", flash) as b:
        holder = serial.serial_for_url(b.port, exclusive=True)  # another program has it
        try:
            code, _, err = _run("deploy", "--port", b.port)
        finally:
            holder.close()
    assert code == 3 and "port busy" in err and err.count("\n") == 1

    # A pty with nothing behind it, and one with something that is not MicroPython.
    master, slave = os.openpty()
    name = os.ttyname(slave)
    with pytest.raises(DeviceError, match="board not answering"):
        Device(name, retries=0, timeout=3)
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            try:
                if os.read(master, 64):
                    os.write(master, b"AT OK\r\nGARBAGE\r\n")
            except OSError:
                return

    th = threading.Thread(target=chatter, daemon=True)
    th.start()
    try:
        with pytest.raises(DeviceError, match="not a MicroPython board"):
            Device(name, retries=1, timeout=3)
    finally:
        stop.set()
        os.close(slave)
        os.close(master)


def test_device_wrapper_files_and_hashes(flash: Path) -> None:
    import hashlib

    data = os.urandom(7000)
    with serve_board("esp32-devkitc", flash) as b, Device(b.socket_url) as dev:
        assert dev.emulated  # the served board announced its ports: waits use board time
        dev.write_atomic("/a/b/c.bin", data)
        assert dev.read_file("/a/b/c.bin") == data
        assert dev.sha256(["/a/b/c.bin", "/none"]) == {
            "/a/b/c.bin": hashlib.sha256(data).hexdigest(),
            "/none": None,
        }
        assert dev.exists("/a/b/c.bin") and not dev.exists("/a/b")
        # The deploy's one look: sizes of every file, hashes only where the size matches.
        dev.write_file("/m.json", b'{"v": 1}')
        sv = dev.survey({"/a/b/c.bin": {1, len(data)}, "/m.json": {3}, "/gone": {5}}, "/m.json")
        assert sv.sizes["/a/b/c.bin"] == len(data) and sv.sizes["/m.json"] == 8
        assert "/gone" not in sv.sizes and sv.data == b'{"v": 1}'
        assert sv.hashes == {"/a/b/c.bin": hashlib.sha256(data).hexdigest()}
        assert sv.mpy[0] == 6 and sv.machine == load_board("esp32-devkitc").machine
        assert dev.survey({}, "/none").data is None
        dev.remove("/m.json")
        dev.rename("/a/b/c.bin", "/a/d.bin")
        assert dev.list_files("/a") == ["/a/d.bin"]
        assert dev.remove("/a/d.bin") and not dev.remove("/a/d.bin")
        with pytest.raises(FileNotFoundError):
            dev.read_file("/a/d.bin")
        assert len(dev.unique_id()) == 6  # an ESP32's id is its 6-byte MAC
        assert dev.mpy_version()[0] == 6
        assert dev.detect_board().name == "esp32-devkitc"
        with pytest.raises(DeviceError, match="ZeroDivisionError"):
            dev.exec("1/0")
    assert (flash / "a").is_dir() and not (flash / "a" / "d.bin").exists()


def test_flash_pico_enters_the_bootloader_over_the_repl(flash: Path, tmp_path: Path) -> None:
    """No drive yet: flash asks MicroPython for machine.bootloader(), then finds the drive."""
    from atsource.flash import flash as do_flash

    drive = tmp_path / "drive"
    drive.mkdir()
    fw = tmp_path / "fw.uf2"
    block = bytearray(512)  # one UF2 block for the RP2040 family
    struct.pack_into(
        "<IIIIIIII", block, 0, 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000, 256, 0, 1, 0xE48BFF56
    )
    struct.pack_into("<I", block, 508, 0x0AB16F30)
    fw.write_bytes(bytes(block))
    with serve_board("pico-w", flash) as b:
        entered = threading.Event()
        b.emu.on_line = lambda _t, line: entered.set() if "entered the bootloader" in line else None

        def show_drive() -> None:  # what the RP2040's boot ROM does: a drive appears
            if entered.wait(20):
                (drive / "INFO_UF2.TXT").write_text("Board-ID: RPI-RP2\n")

        th = threading.Thread(target=show_drive, daemon=True)
        th.start()
        res = do_flash(b.port, fw, board="pico-w", uf2_dir=drive, port_timeout=0)
        th.join(5)
        assert entered.is_set()
    assert (drive / "fw.uf2").read_bytes() == fw.read_bytes()
    assert res.method == "uf2"
