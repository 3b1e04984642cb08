"""The public register as the field tools feed it: provision, keys rotate, deploy and keys
revoke on an emulated board each append their signed event; `register build` writes the site,
`register verify` accepts it, and a real headless Chromium opens it (DOM dump and screenshot)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from atsource import eventlog, paths
from atsource.cli import main
from atsource.emulator.api import EMULATED_CONFIG, serve_board
from atsource.registry import KEY_ENV, KEY_FILE_ENV
from click.testing import CliRunner
from PIL import Image

BASE = "https://sensors.example.org/"
PLACE = "Plaza South, by the fountain"


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One board through its life, with the real commands; returns the paths involved."""
    d = tmp_path_factory.mktemp("register")
    mp = pytest.MonkeyPatch()
    mp.delenv(KEY_ENV, raising=False)
    mp.delenv(KEY_FILE_ENV, raising=False)
    mp.delenv(eventlog.LOG_ENV, raising=False)
    mp.delenv(eventlog.KEY_ENV, raising=False)
    mp.setenv("ATSOURCE_REGISTRY", str(d / "registry.db"))
    mp.setenv("ATSOURCE_REGISTER_URL", BASE)
    src = d / "src"
    shutil.copytree(paths.FIRMWARE, src, ignore=shutil.ignore_patterns("__pycache__"))
    cfg = d / "site.json"
    cfg.write_text(json.dumps(EMULATED_CONFIG))
    try:
        with serve_board("pico-w", d / "flash") as b:
            steps = [
                ("deploy", "--port", b.port, "--firmware", str(src)),
                ("provision", "--port", b.port, "--site", "plaza-south", "--place", PLACE)
                + ("--location", "48.85837,2.29448", "--config", str(cfg))
                + ("--notice-dir", str(d / "notices")),
                ("keys", "rotate", "dev-000001", "--port", b.port),
            ]
            for args in steps:
                code, _, err = cli(*args)
                assert code == 0, f"{args[0]}: {err}"
            with open(src / "sensor" / "window.py", "a") as f:
                f.write("\n_REGISTER_TEST = 1\n")
            code, _, err = cli("deploy", "--port", b.port, "--firmware", str(src))
            assert code == 0, err
        code, _, err = cli("keys", "revoke", "dev-000001")
        assert code == 0, err
        code, out, err = cli("register", "build", "--out", str(d / "site"), "--json")
        assert code == 0, err
        # The device's notice, in French: its place and installation date come from the log.
        code, _, err = cli("notice", "dev-000001", "--out", str(d / "fr"), "--lang", "fr")
        assert code == 0, err
        assert json.loads(out)["sensors"] == 1
    finally:
        mp.undo()
    return {"dir": d, "site": d / "site", "log": d / "registry.db.events.jsonl"}


def test_commands_append_their_events(fleet: dict[str, Path]) -> None:
    events = eventlog.read(fleet["log"])
    assert [(e["event"], e["device"]) for e in events] == [
        ("provisioned", "dev-000001"),
        ("key_rotated", "dev-000001"),
        ("firmware_updated", "dev-000001"),
        ("key_revoked", "dev-000001"),
        ("retired", "dev-000001"),
    ]
    prov = events[0]["data"]
    assert prov["place"] == PLACE and prov["kid"] == "0000000101"
    assert prov["location"]["coarsen_m"] == 100 and prov["location"]["lat"] != 48.85837
    assert events[1]["data"]["kid"] == "0000000102"
    assert events[2]["data"]["kid"] == "0000000102" and events[2]["data"]["files"] == 1
    assert events[3]["data"]["kids"] == ["0000000101", "0000000102"]
    # Nothing private in the public log: no secret, no board id hash.
    text = fleet["log"].read_text()
    assert "board_hash" not in text and "master" not in text and "seed" not in text
    # The notice written at provisioning opens the sensor's page in the register.
    assert (
        BASE + "sensors/dev-000001/"
        in (fleet["dir"] / "notices/dev-000001/notice.html").read_text()
    )


def test_a_device_notice_names_its_place_and_date(fleet: dict[str, Path]) -> None:
    page = (fleet["dir"] / "fr" / "notice.html").read_text()
    installed = eventlog.read(fleet["log"])[0]["time"][:10]
    assert '<html lang="fr">' in page and f"site {PLACE}" in page
    assert f"Installé le {installed}." in page
    assert BASE + "sensors/dev-000001/" in page


def test_the_built_register_verifies(fleet: dict[str, Path]) -> None:
    code, out, err = cli("register", "verify", str(fleet["site"]))
    assert code == 0, err
    assert "5 event(s), 1 sensor(s)" in out and out.strip().endswith("history intact")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (make setup installs it with apt-get as root)")
    return exe


def _browser(exe: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
        + ["--disable-dev-shm-usage", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_register_opens_in_a_real_browser(fleet: dict[str, Path], tmp_path: Path) -> None:
    exe = _chromium()
    index = (fleet["site"] / "index.html").as_uri()
    dom = _browser(exe, "--dump-dom", index)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h1>Public register of sensors</h1>" in dom.stdout
    assert PLACE in dom.stdout and "dev-000001" in dom.stdout and ">retired<" in dom.stdout

    page = (fleet["site"] / "sensors/dev-000001/index.html").as_uri()
    dom = _browser(exe, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in ("Provisioned", "Key rotated", "Firmware updated", "Key revoked", "Retired"):
        assert f"<td>{text}</td>" in dom.stdout
    shot = tmp_path / "page.png"
    r = _browser(exe, f"--screenshot={shot}", "--window-size=1200,1600", page)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 1600)
        grey = im.convert("L")
        # The page is drawn: dark text on a light page, and the notice image (its dark header
        # band) loaded from the relative link next to the page.
        hist = grey.histogram()
        dark = sum(hist[:80]) / (1200 * 1600)
        assert 0.005 < dark < 0.5, dark
        band = grey.crop((24, 0, 344, 1600)).histogram()
        assert sum(band[:120]) > 2000  # the notice's dark blue header band, not only text
