"""Operating a fleet: `atsource devices list` health and `--stale`, retention (`atsource store
prune` and the running receiver's schedule), Prometheus metrics scraped over loopback from a
running `atsource receive`. Real registry, real SQLite store, real HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cbor2
import pytest
from atsource import keys
from atsource import policy as policymod
from atsource.cli import main as cli_main
from atsource.frame import enc_structure, external_aad, make_nonce
from atsource.metrics import ReceiverMetrics
from atsource.receiver import Receiver, write_capture
from atsource.registry import Registry
from atsource.store import SQLiteStore
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from prometheus_client.parser import text_string_to_metric_families

DEFAULT_HASH = policymod.policy_hash(policymod.load_policy(policymod.DEFAULT))[:4]
DEFAULT_DAYS = policymod.load_policy(policymod.DEFAULT)["retention"]["receiver_days"]
DAY = 86400


def seal(dev: tuple[bytes, bytes, bytes], piv: int, start: int, extra: Any = None) -> bytes:
    kid, key, iv = dev
    p = piv.to_bytes(max(1, (piv.bit_length() + 7) // 8), "big")
    rec = {0: start, 1: 900, 2: DEFAULT_HASH, 7: 6, 20: 60, **(extra or {})}
    aad = enc_structure(external_aad(kid, p))
    ct = AESCCM(key, tag_length=8).encrypt(make_nonce(iv, p), cbor2.dumps(rec), aad)
    return cbor2.dumps(cbor2.CBORTag(16, [b"\xa1\x01\x0a", {4: kid, 6: p}, ct]))


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Path, list[tuple[bytes, bytes, bytes]]]:
    reg_path = tmp_path / "registry.db"
    devs = []
    with Registry.open(reg_path) as reg:
        for i in range(3):
            _, kid = reg.begin_device(f"{i + 1:02x}" * 32, "pico-w", f"site-{i}", "5a3c9e01")
            reg.activate(kid)
            devs.append((kid, *keys.derive(reg.master(kid), kid)))
    return reg_path, devs


def run(*args: str) -> Any:
    return CliRunner().invoke(cli_main, list(args))


def test_devices_list_shows_health_and_stale_devices(fleet: Any, tmp_path: Path) -> None:
    reg_path, (fresh, quiet, never) = fleet
    db = tmp_path / "r.db"
    now = time.time()
    store = SQLiteStore(db)
    # fresh: a window that ended 5 minutes ago, stored now; a replay and a forged frame too
    rx = Receiver(store, Registry.open(reg_path).key_entry, clock=lambda: now)
    start = int(now) - 900 - 300
    assert rx.submit(seal(fresh, 7, start, {28: "1.29.0-atsource.3"})).accepted
    assert rx.submit(seal(fresh, 7, start)).reason == "replay"
    assert rx.submit(seal(fresh, 8, start)[:-1] + b"\x00").reason == "bad-tag"
    # quiet: its last window ended two days ago, received then
    old = int(now) - 2 * DAY
    rx_old = Receiver(store, Registry.open(reg_path).key_entry, clock=lambda: old + 60)
    assert rx_old.submit(seal(quiet, 41, old - 900)).accepted
    store.close()

    base = ["devices", "list", "--registry", str(reg_path), "--db", str(db)]
    r = run(*base, "--json")
    assert r.exit_code == 0, r.output
    rows = {d["device"]: d for d in json.loads(r.stdout)}
    f, q, n = rows["dev-000001"], rows["dev-000002"], rows["dev-000003"]
    assert f["last_piv"] == 7 and f["frames_accepted"] == 1 and f["windows_missing_since"] is None
    assert f["rejected"] == {"bad-tag": 1, "replay": 1}
    assert f["firmware"] == "1.29.0-atsource.3" and f["policy_in_force"] == DEFAULT_HASH.hex()
    assert f["generation"] == 1 and 0 <= f["last_frame_age_s"] < 60
    assert q["last_piv"] == 41 and q["windows_missing_since"] is not None
    assert q["last_frame_age_s"] > DAY and q["firmware"] is None
    assert n["last_frame"] is None and n["frames_accepted"] == 0 and n["rejected"] == {}

    r = run(*base, "--stale", "1h", "--json")
    assert r.exit_code == 4, r.output  # a monitoring job sees it
    assert [d["device"] for d in json.loads(r.stdout)] == ["dev-000002", "dev-000003"]
    r = run(*base, "--stale", "3d")
    assert r.exit_code == 4 and "dev-000003" in r.output and "dev-000002" not in r.output
    assert "never" in r.output

    r = run(*base)
    assert r.exit_code == 0 and "bad-tag=1 replay=1" in r.output and "1.29.0-atsource.3" in r.output

    r = run(*base, "--stale", "soon")
    assert r.exit_code == 2 and "bad --stale 'soon'" in r.output
    assert "Traceback" not in r.output


def test_devices_list_without_a_store_yet(fleet: Any, tmp_path: Path) -> None:
    reg_path, _ = fleet
    db = tmp_path / "none.db"
    r = run("devices", "list", "--registry", str(reg_path), "--db", str(db), "--stale", "1h")
    assert r.exit_code == 4 and r.output.count("never") == 3
    assert not db.exists()  # listing does not create a store


def test_store_prune_deletes_past_the_policys_receiver_days(fleet: Any, tmp_path: Path) -> None:
    reg_path, (dev, _, _) = fleet
    db = tmp_path / "r.db"
    now = int(time.time())
    ages = [DEFAULT_DAYS + 30, DEFAULT_DAYS + 1, DEFAULT_DAYS - 1, 0]  # days
    cap = tmp_path / "cap.hex"
    with cap.open("w") as fh:
        write_capture(fh, [seal(dev, i, now - a * DAY) for i, a in enumerate(ages)])
    args = ["receive", "--from", str(cap), "--db", str(db), "--registry", str(reg_path), "-q"]
    r = run(*args, "--prune-every", "0")
    assert r.exit_code == 0, r.output
    with SQLiteStore(db) as s:
        assert s.count() == 4
    r = run("store", "prune", "--db", str(db), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["deleted"] == {DEFAULT_HASH.hex(): 2} and out["kept_unknown_policy"] == 0
    with SQLiteStore(db) as s:
        assert sorted(r.piv for r in s.readings()) == [2, 3]
    r = run("store", "prune", "--db", str(db))
    assert r.exit_code == 0 and "0 reading(s) deleted" in r.output


def test_the_running_receiver_prunes_on_its_schedule(fleet: Any, tmp_path: Path) -> None:
    reg_path, (dev, other, _) = fleet
    db = tmp_path / "r.db"
    now = int(time.time())
    with SQLiteStore(db) as s:
        rx = Receiver(s, Registry.open(reg_path).key_entry)
        assert rx.submit(seal(dev, 1, now - (DEFAULT_DAYS + 2) * DAY)).accepted
        assert rx.submit(seal(dev, 2, now - DAY)).accepted
    cap = tmp_path / "cap.hex"
    with cap.open("w") as fh:
        write_capture(fh, [seal(other, 1, now - 900)])
    r = run("receive", "--from", str(cap), "--db", str(db), "--registry", str(reg_path), "-q")
    assert r.exit_code == 0, r.output
    assert "pruned 1 reading(s) past retention" in r.output
    with SQLiteStore(db) as s:
        assert sorted((x.kid, x.piv) for x in s.readings()) == sorted([(dev[0], 2), (other[0], 1)])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_of_a_running_receiver_over_loopback(fleet: Any, tmp_path: Path) -> None:
    """`atsource receive --from - --metrics-port 0`: frames fed on stdin, /metrics scraped
    while the receiver runs."""
    reg_path, (dev, _, _) = fleet
    now = int(time.time())
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("atsource")), "receive", "--from", "-", "--db",
         str(tmp_path / "r.db"), "--registry", str(reg_path), "--metrics-port", "0", "-q"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stderr is not None
    port: list[int] = []
    got = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "metrics on http://127.0.0.1:" in line:
                port.append(int(line.rsplit(":", 1)[1].split("/")[0]))
                got.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert got.wait(30), "no metrics line"
        frames = [seal(dev, p, now - 1800) for p in range(5)]
        frames += [frames[0], b"\xd0\x83", seal(dev, 9, now)[:-1] + b"\x00"]
        proc.stdin.write("".join(f.hex() + "\n" for f in frames))
        proc.stdin.flush()
        accepted = ("atsource_frames_accepted_total", (("device", "dev-000001"),))
        deadline = time.monotonic() + 30
        while (m := _scrape(port[0])).get(accepted, 0) < 5 or len(
            [k for k in m if k[0] == "atsource_frames_rejected_total"]
        ) < 3:
            assert time.monotonic() < deadline, m
            time.sleep(0.1)
        assert m[accepted] == 5
        rej = "atsource_frames_rejected_total"
        assert m[(rej, (("device", "dev-000001"), ("reason", "replay")))] == 1
        assert m[(rej, (("device", "dev-000001"), ("reason", "bad-tag")))] == 1
        assert m[(rej, (("device", ""), ("reason", "not-cose")))] == 1
        lag = m[("atsource_frame_lag_seconds", (("device", "dev-000001"),))]
        assert 900 - 5 <= lag <= 900 + 120  # the window ended 15 minutes before it was stored
        assert m[("atsource_last_accepted_timestamp_seconds", (("device", "dev-000001"),))] >= now
    finally:
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_metrics_label_no_unknown_kid_and_bad_listen_address() -> None:
    from atsource.receiver import Result

    m = ReceiverMetrics()
    m.observe(Result("unknown-kid", bytes.fromhex("deadbeef01")))
    text = "".join(
        f"{s.name}{s.labels}\n" for f in m.registry.collect() for s in f.samples
    )  # hostile kids add no series
    assert "deadbeef" not in text and "dev-3735928559" not in text
    r = run("receive", "--from", "-", "--metrics-port", "nope")
    assert r.exit_code == 2 and "bad --metrics-port" in r.output
