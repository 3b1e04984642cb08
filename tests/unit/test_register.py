"""The public register: the signed, hash-chained event log, the static site built from it, and
`atsource register verify` finding an edited, removed, reordered or cut event (in a directory
and over HTTP), with real Ed25519 keys (cryptography) and a real HTTP server on loopback."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import qrcode
import qrcode.constants
from atsource import eventlog, notice, register
from atsource import policy as pol
from atsource.cli import main
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image

DEFAULT = pol.load_policy(pol.DEFAULT)
BASE = "https://sensors.example.org/register/"


def _log(tmp_path: Path) -> eventlog.EventLog:
    log = eventlog.EventLog(tmp_path / "events.jsonl", tmp_path / "operator.pem")
    h = pol.policy_hash(DEFAULT).hex()
    loc = register.coarsen(48.85837, 2.29448, DEFAULT["location"]["coarsen_m"])
    common = {"board": "pico-w", "generation": 1, "policy_hash": h, "policy": DEFAULT}
    log.append(
        "provisioned",
        "dev-000001",
        {
            **common,
            "site": "plaza-south",
            "place": "Plaza South, by the fountain",
            "kid": "0000000101",
            "location": loc,
        },
    )
    log.append(
        "provisioned",
        "dev-000002",
        {**common, "site": "depot", "kid": "0000000201"},
    )
    log.append("key_rotated", "dev-000001", {"kid": "0000000102", "old_kid": "0000000101"})
    log.append("firmware_updated", "dev-000001", {"manifest_sha256": "ab" * 32, "files": 2})
    log.append("key_revoked", "dev-000002", {"kids": ["0000000201"]})
    log.append("retired", "dev-000002", {})
    return log


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> tuple[eventlog.EventLog, Path]:
    d = tmp_path_factory.mktemp("register")
    log = _log(d)
    register.build(log.events(), log.key(), d / "site", BASE)
    return log, d / "site"


@pytest.fixture
def built(
    _template: tuple[eventlog.EventLog, Path], tmp_path: Path
) -> tuple[eventlog.EventLog, Path]:
    # A copy per test (notices take a while to render): each test may tamper with its own.
    log, site = _template
    shutil.copytree(site, tmp_path / "site")
    return log, tmp_path / "site"


def _verify(source: str | Path, *extra: str) -> tuple[int, list[str], str]:
    r = CliRunner().invoke(main, ["register", "verify", str(source), *extra])
    return r.exit_code, r.stderr.splitlines(), r.stdout


def _lines(out: Path) -> list[str]:
    return (out / register.LOG_FILE).read_text().splitlines()


def _write(out: Path, lines: list[str]) -> None:
    (out / register.LOG_FILE).write_text("".join(ln + "\n" for ln in lines))


def test_the_chain_links_and_signs_every_event(built: tuple[eventlog.EventLog, Path]) -> None:
    log, out = built
    events = log.events()
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0]["prev"] == "0" * 64
    for a, b in zip(events, events[1:], strict=False):
        assert b["prev"] == eventlog.event_hash(a)
    # The published key is the operator's; each signature checks with it, independently.
    pub = serialization.load_pem_public_key((out / "operator.pub").read_bytes())
    for e in events:
        body = {k: v for k, v in e.items() if k != "sig"}
        pub.verify(bytes.fromhex(e["sig"]), eventlog.DOMAIN + eventlog.canonical(body))  # type: ignore[union-attr]
    # The log is published byte for byte.
    assert (out / register.LOG_FILE).read_bytes() == log.path.read_bytes()


def test_an_intact_register_verifies(built: tuple[eventlog.EventLog, Path]) -> None:
    _, out = built
    code, err, stdout = _verify(out)
    assert (code, err) == (0, [])
    assert stdout.strip().endswith("history intact") and "6 event(s), 2 sensor(s)" in stdout


def test_an_edited_event_is_found(built: tuple[eventlog.EventLog, Path]) -> None:
    _, out = built
    lines = _lines(out)
    ev = json.loads(lines[2])
    ev["data"]["kid"] = "00000001ff"  # rewrite which key was rotated in
    lines[2] = json.dumps(ev)
    _write(out, lines)
    code, err, _ = _verify(out)
    assert code == 5
    assert f"{out}: event 3: signature does not match: the event was edited" in err
    assert f"{out}: event 4: does not follow the event before it (chain broken)" in err


def test_a_removed_event_is_found(built: tuple[eventlog.EventLog, Path]) -> None:
    _, out = built
    lines = _lines(out)
    del lines[2]
    _write(out, lines)
    code, err, _ = _verify(out)
    assert code == 5
    assert err[0] == f"{out}: event 4: event 3 removed (or moved)"
    assert any("the signed head names 6 events" in ln for ln in err)


def test_reordered_events_are_found(built: tuple[eventlog.EventLog, Path]) -> None:
    _, out = built
    lines = _lines(out)
    lines[2], lines[3] = lines[3], lines[2]
    _write(out, lines)
    code, err, _ = _verify(out)
    assert code == 5
    assert f"{out}: event 3: out of order (after event 4)" in err


def test_events_cut_from_the_end_are_found(built: tuple[eventlog.EventLog, Path]) -> None:
    _, out = built
    _write(out, _lines(out)[:-2])  # the retirement and its revocation made to vanish
    code, err, _ = _verify(out)
    assert code == 5 and len(err) == 1
    assert "the signed head names 6 events" in err[0] and "the log holds 4" in err[0]


def test_a_history_rewritten_with_another_key(built: tuple[eventlog.EventLog, Path]) -> None:
    log, out = built
    mallory = Ed25519PrivateKey.generate()
    forged: list[eventlog.Event] = []
    for e in log.events():  # re-signed and re-chained: a consistent history, the wrong key
        prev = eventlog.event_hash(forged[-1]) if forged else eventlog.GENESIS
        forged.append(eventlog.sign(mallory, {**e, "prev": prev}))
    _write(out, [eventlog.canonical(e).decode() for e in forged])
    code, err, _ = _verify(out)
    assert code == 5 and len(err) == 6 + 1  # every event, and the head
    # Replacing the published key too is caught by pinning the operator's real key.
    (out / "operator.pub").write_bytes(eventlog.public_pem(mallory))
    pinned = out.parent / "real.pub"
    pinned.write_bytes(eventlog.public_pem(log.key()))
    code, err, stdout = _verify(out, "--key", str(pinned))
    assert code == 5 and "pinned key" in stdout


@pytest.fixture
def served(built: tuple[eventlog.EventLog, Path]) -> Iterator[tuple[str, Path]]:
    _, out = built
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/", out
    srv.shutdown()
    srv.server_close()


def test_verify_over_http(served: tuple[str, Path]) -> None:
    url, out = served
    code, err, stdout = _verify(url, "--json")
    assert code == 0 and json.loads(stdout)["ok"] is True
    lines = _lines(out)
    del lines[0]
    _write(out, lines)
    code, _, stdout = _verify(url, "--json")
    verdict = json.loads(stdout)
    assert code == 5 and verdict["problems"][0] == "event 2: event 1 removed (or moved)"


def test_bad_sources_are_one_line(tmp_path: Path) -> None:
    code, err, _ = _verify(tmp_path / "nowhere")
    assert code == 2 and err == [
        f"atsource: error: {tmp_path / 'nowhere'}: no such register directory (or give its URL)"
    ]
    code, err, _ = _verify(tmp_path)
    assert code == 2 and err == [
        f"atsource: error: {tmp_path}: not a register (log/events.jsonl missing)"
    ]


def test_the_site_lists_sensors_with_coarse_places_and_history(
    built: tuple[eventlog.EventLog, Path],
) -> None:
    _, out = built
    index = (out / "index.html").read_text()
    assert "Plaza South, by the fountain" in index and "dev-000002" in index
    assert "retired" in index
    # The published point is the centre of the policy's 100 m cell, not the sensor's position.
    assert "48.85837" not in index and "2.29448" not in index
    loc = register.coarsen(48.85837, 2.29448, 100)
    assert abs(loc["lat"] - 48.85837) < 100 / 111_320 and f"{loc['lat']:.5f}" in index
    page = (out / "sensors" / "dev-000001" / "index.html").read_text()
    for text in ("Provisioned", "Key rotated", "Firmware updated", "notice.png", "policy.json"):
        assert text in page
    assert 'href="/' not in page and "file:" not in page  # relative links: the folder moves
    assert json.loads((out / "sensors/dev-000001/policy.json").read_text()) == DEFAULT


def test_the_notice_qr_opens_the_sensor_page(built: tuple[eventlog.EventLog, Path]) -> None:
    _, out = built
    url = BASE + "sensors/dev-000001/"
    q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    q.add_data(url)
    q.make(fit=True)
    want = [[bool(x) for x in row] for row in q.get_matrix()]
    sign = notice.layout(DEFAULT, site="Plaza South, by the fountain", device="dev-000001", url=url)
    assert sign.qr_size == len(want)
    s = notice.PNG_SCALE
    x0, y0 = sign.qr_origin
    with Image.open(out / "sensors/dev-000001/notice.png") as im:
        grey = im.convert("L")
        got = [
            [
                grey.getpixel(
                    (
                        round((x0 + (i + 0.5) * sign.qr_module) * s),
                        round((y0 + (j + 0.5) * sign.qr_module) * s),
                    )
                )
                < 128  # type: ignore[operator]
                for i in range(len(want))
            ]
            for j in range(len(want))
        ]
    assert got == want
    assert url in (out / "sensors/dev-000001/notice.html").read_text()


def test_build_refuses_a_broken_log(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    del lines[1]
    with pytest.raises(Exception, match="does not verify"):
        register.build(eventlog.parse_lines("\n".join(lines)), log.key(), tmp_path / "o", None)


def test_build_never_replaces_a_folder_that_is_not_a_register(tmp_path: Path) -> None:
    log = _log(tmp_path)
    precious = tmp_path / "docs"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    r = CliRunner().invoke(
        main,
        ["register", "build", "--out", str(precious)],
        env={eventlog.LOG_ENV: str(log.path), eventlog.KEY_ENV: str(log.key_path)},
    )
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"atsource: error: {precious} is not empty and not a register: choose another --out"
    ]
    assert (precious / "thesis.tex").read_text() == "years of work"
