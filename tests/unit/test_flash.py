"""`atsource flash`: image checks, esptool's calls at its API boundary (mocked: no ESP32 here),
and the UF2 path against a directory that looks like a Pico's BOOTSEL drive."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any
from unittest import mock

import esptool
import pytest
from atsource import flash as flashmod
from atsource.boards import load_board
from atsource.errors import DeviceError, UserError

RP2040 = 0xE48BFF56


def esp_image(chip_id: int = 0, size: int = 4096) -> bytes:
    """An ESP image header: magic E9, segments, mode, size/freq, entry, then the extended
    header whose bytes 12-13 name the chip (little-endian)."""
    head = bytearray(24)
    head[0] = 0xE9
    head[1] = 3
    struct.pack_into("<I", head, 4, 0x40080000)
    struct.pack_into("<H", head, 12, chip_id)
    return bytes(head) + bytes(range(256)) * ((size - 24) // 256)


def uf2(blocks: int = 3, family: int = RP2040, flags: int = 0x2000) -> bytes:
    out = bytearray()
    for i in range(blocks):
        b = bytearray(512)
        struct.pack_into(
            "<IIIIIIII",
            b,
            0,
            0x0A324655,
            0x9E5D5157,
            flags,
            0x10000000 + 256 * i,
            256,
            i,
            blocks,
            family,
        )
        b[32:288] = bytes([i & 0xFF]) * 256
        struct.pack_into("<I", b, 508, 0x0AB16F30)
        out += b
    return bytes(out)


def bootsel_drive(tmp_path: Path, board_id: str = "RPI-RP2") -> Path:
    d = tmp_path / "RPI-RP2"
    d.mkdir()
    (d / "INFO_UF2.TXT").write_text(
        f"UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: {board_id}\n"
    )
    (d / "INDEX.HTM").write_text("<html></html>")
    return d


# ---- image checks ----------------------------------------------------------------------------


def test_esp_image_for_the_board_chip_is_accepted() -> None:
    flashmod.check_esp_image(esp_image(0), load_board("esp32-devkitc"))


def test_esp_image_for_another_chip_is_refused() -> None:
    with pytest.raises(UserError, match="built for ESP32-S3"):
        flashmod.check_esp_image(esp_image(9), load_board("esp32-devkitc"), "fw.bin")
    with pytest.raises(UserError, match="not an ESP firmware image"):
        flashmod.check_esp_image(b"\x00" * 64, load_board("esp32-devkitc"))
    with pytest.raises(UserError, match="UF2 file"):
        flashmod.check_esp_image(uf2(), load_board("esp32-devkitc"))


def test_uf2_family_is_checked_on_every_block() -> None:
    pico = load_board("pico-w")
    assert flashmod.check_uf2(uf2(4), pico) == 4
    with pytest.raises(UserError, match="RP2350-ARM-S"):
        flashmod.check_uf2(uf2(2, family=0xE48BFF59), pico)
    with pytest.raises(UserError, match="no family id"):
        flashmod.check_uf2(uf2(2, flags=0), pico)
    mixed = uf2(2) + uf2(1, family=0xC47E5767)
    with pytest.raises(UserError, match="ESP32-S3"):
        flashmod.check_uf2(mixed, pico)
    with pytest.raises(UserError, match="not a UF2"):
        flashmod.check_uf2(esp_image(), pico)
    with pytest.raises(UserError, match="multiple of 512"):
        flashmod.check_uf2(uf2(1)[:-1], pico)


# ---- ESP32 through esptool (mocked at the API boundary) --------------------------------------


class FakeEsptool:
    """Stands in for the esptool functions flash.py calls; records every call in order."""

    def __init__(self, chip: str = "ESP32") -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.rom = mock.Mock(name="rom", CHIP_NAME=chip)
        self.stub = mock.Mock(name="stub", CHIP_NAME=chip)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in (
            "detect_chip",
            "run_stub",
            "erase_flash",
            "write_flash",
            "verify_flash",
            "reset_chip",
        ):
            monkeypatch.setattr(esptool, name, getattr(self, name))

    def detect_chip(self, port: str) -> Any:
        self.calls.append(("detect_chip", port))
        return self.rom

    def run_stub(self, esp: Any) -> Any:
        self.calls.append(("run_stub", esp))
        return self.stub

    def erase_flash(self, esp: Any) -> None:
        self.calls.append(("erase_flash", esp))

    def write_flash(self, esp: Any, addr_data: list[tuple[int, bytes]]) -> None:
        self.calls.append(("write_flash", esp, addr_data))
        from esptool.logger import log

        total = len(addr_data[0][1])
        for done in (0, total // 2, total):  # esptool reports progress through its logger
            log.progress_bar(done, total, prefix="Writing")

    def verify_flash(self, esp: Any, addr_data: list[tuple[int, bytes]]) -> None:
        self.calls.append(("verify_flash", esp, addr_data))

    def reset_chip(self, esp: Any, mode: str) -> None:
        self.calls.append(("reset_chip", esp, mode))


def test_esp32_flash_calls_esptool_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeEsptool()
    fake.install(monkeypatch)
    img = esp_image(0, 8192)
    fw = tmp_path / "ESP32_GENERIC.bin"
    fw.write_bytes(img)
    seen: list[tuple[int, int]] = []
    res = flashmod.flash(
        "/dev/ttyUSB9",
        fw,
        board="esp32-devkitc",
        erase=True,
        progress=lambda d, t: seen.append((d, t)),
    )
    s = fake.stub
    assert fake.calls == [
        ("detect_chip", "/dev/ttyUSB9"),
        ("run_stub", fake.rom),
        ("erase_flash", s),
        ("write_flash", s, [(0x1000, img)]),
        ("verify_flash", s, [(0x1000, img)]),
        ("reset_chip", s, "hard-reset"),
    ]
    n = len(img)
    assert seen == [(0, n), (n // 2, n), (n, n)]
    assert res.method == "esptool" and res.erased and res.bytes == n
    s._port.close.assert_called_once_with()


def test_esp32_without_erase_does_not_erase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeEsptool()
    fake.install(monkeypatch)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp_image())
    flashmod.flash("/dev/ttyUSB9", fw, board="esp32-devkitc")
    assert [c[0] for c in fake.calls] == [
        "detect_chip",
        "run_stub",
        "write_flash",
        "verify_flash",
        "reset_chip",
    ]


def test_refused_before_anything_is_erased(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEsptool()
    fake.install(monkeypatch)
    with pytest.raises(UserError, match="not found"):
        flashmod.flash("/dev/ttyUSB9", tmp_path / "missing.bin", board="esp32-devkitc", erase=True)
    wrong = tmp_path / "s3.bin"
    wrong.write_bytes(esp_image(9))
    with pytest.raises(UserError, match="ESP32-S3"):
        flashmod.flash("/dev/ttyUSB9", wrong, board="esp32-devkitc", erase=True)
    assert fake.calls == []  # the board was never even contacted
    # The image is right but the board on the port is another chip: stop before erasing.
    other = FakeEsptool(chip="ESP32-S3")
    other.install(monkeypatch)
    ok = tmp_path / "ok.bin"
    ok.write_bytes(esp_image(0))
    with pytest.raises(UserError, match="is an ESP32-S3"):
        flashmod.flash("/dev/ttyUSB9", ok, board="esp32-devkitc", erase=True)
    assert [c[0] for c in other.calls] == ["detect_chip"]


def test_esptool_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_board(port: str) -> Any:
        raise esptool.FatalError(
            "Failed to connect to Espressif device: No serial data received.\nMore"
        )

    monkeypatch.setattr(esptool, "detect_chip", no_board)
    fw = tmp_path / "fw.bin"
    fw.write_bytes(esp_image())
    with pytest.raises(DeviceError) as ei:
        flashmod.flash("/dev/ttyUSB9", fw, board="esp32-devkitc")
    assert "\n" not in str(ei.value) and "No serial data" in str(ei.value)


# ---- Pico W through a BOOTSEL drive ----------------------------------------------------------


def test_uf2_is_copied_to_the_bootsel_drive(tmp_path: Path) -> None:
    drive = bootsel_drive(tmp_path)
    data = uf2(5)
    fw = tmp_path / "RPI_PICO_W-v1.29.0.uf2"
    fw.write_bytes(data)
    seen: list[int] = []
    res = flashmod.flash(
        None,
        fw,
        board="pico-w",
        uf2_dir=drive,
        port_timeout=0,
        progress=lambda d, t: seen.append(d),
    )
    assert (drive / fw.name).read_bytes() == data
    assert res.method == "uf2" and res.target == str(drive) and seen[-1] == len(data)


def test_uf2_found_among_mount_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "USBSTICK"
    other.mkdir()
    drive = bootsel_drive(tmp_path)
    monkeypatch.setattr(flashmod, "_mount_points", lambda: [other, drive])
    assert flashmod.find_uf2_drive(load_board("pico-w")) == drive


def test_wrong_family_or_wrong_drive_copies_nothing(tmp_path: Path) -> None:
    drive = bootsel_drive(tmp_path)
    fw = tmp_path / "rp2350.uf2"
    fw.write_bytes(uf2(2, family=0xE48BFF59))
    with pytest.raises(UserError, match="RP2350"):
        flashmod.flash(None, fw, board="pico-w", uf2_dir=drive, port_timeout=0)
    assert sorted(p.name for p in drive.iterdir()) == ["INDEX.HTM", "INFO_UF2.TXT"]
    rp2040 = tmp_path / "rp2040.uf2"
    rp2040.write_bytes(uf2(2))
    with pytest.raises(UserError, match="--erase is for ESP32"):
        flashmod.flash(None, rp2040, board="pico-w", erase=True, uf2_dir=drive)
    assert not (drive / "rp2040.uf2").exists()

    rp2350 = tmp_path / "other"
    rp2350.mkdir()
    (rp2350 / "INFO_UF2.TXT").write_text("Board-ID: RP2350\n")
    good = tmp_path / "good.uf2"
    good.write_bytes(uf2(1))
    with pytest.raises(DeviceError, match="no RPI-RP2 drive appeared"):
        flashmod.flash_uf2(
            None,
            good.read_bytes(),
            load_board("pico-w"),
            name="good.uf2",
            uf2_dir=rp2350,
            drive_timeout=0.3,
            port_timeout=0,
        )
    assert not (rp2350 / "good.uf2").exists()


def test_waits_for_the_port_to_come_back(tmp_path: Path) -> None:
    drive = bootsel_drive(tmp_path)
    fw = tmp_path / "fw.uf2"
    fw.write_bytes(uf2(1))
    port = tmp_path / "ttyACM7"  # stands for the port node the board brings back
    port.write_text("")
    res = flashmod.flash(str(port), fw, board="pico-w", uf2_dir=drive, port_timeout=2)
    assert res.port == str(port)
    port.unlink()
    with pytest.raises(DeviceError, match="did not come back"):
        flashmod.flash(str(port), fw, board="pico-w", uf2_dir=drive, port_timeout=0.5)


# ---- real hardware -----------------------------------------------------------------------------


@pytest.mark.hardware
def test_flash_a_real_board() -> None:
    port = os.environ.get("ATSOURCE_FLASH_PORT")
    image = os.environ.get("ATSOURCE_FLASH_IMAGE")
    if not port or not image:
        pytest.skip("no board: set ATSOURCE_FLASH_PORT and ATSOURCE_FLASH_IMAGE to flash one")
    res = flashmod.flash(port, Path(image))
    assert res.bytes == Path(image).stat().st_size
