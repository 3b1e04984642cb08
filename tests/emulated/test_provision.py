"""`atsource provision`, `devices`, `keys` against emulated boards through their serial port
(real mpremote transport, real SQLite registry, the receiver's frame.parse_and_open)."""

from __future__ import annotations

import json
import re
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest
from atsource import keys as keymod
from atsource.cli import main
from atsource.deploy import deploy
from atsource.device import Device
from atsource.emulator.api import serve_board
from atsource.errors import DeviceError
from atsource.frame import FrameRejected, parse_and_open
from atsource.provision import provision
from atsource.registry import KEY_ENV, KEY_FILE_ENV, Registry
from click.testing import CliRunner


@pytest.fixture(autouse=True)
def _registry_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    db = tmp_path / "registry.db"
    monkeypatch.setenv("ATSOURCE_REGISTRY", str(db))
    return db


def cli(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.stdout, r.stderr


def selftest_frame(port: str) -> bytes:
    with Device(port) as dev:
        out = dev.exec("import sensor.selftest\nsensor.selftest.run()")
    m = re.search(r"selftest frame=([0-9a-f]+)", out)
    assert m, out
    return bytes.fromhex(m.group(1))


def assert_consistent(flash: Path, reg: Registry, number: int) -> bytes:
    """Board files and registry agree: the board's identity is the registry's active key."""
    assert not [p.name for p in flash.iterdir() if p.name.endswith(".new")]
    ident = json.loads((flash / "identity.json").read_text())
    kid = bytes.fromhex(ident["kid"])
    assert keymod.split_kid(kid)[0] == number
    assert reg.active_kid(number) == kid and reg.pending_kid(number) is None
    key, iv = keymod.derive(reg.master(kid), kid)
    assert (ident["key"], ident["iv"]) == (key.hex(), iv.hex())
    assert ident["seed"] == reg.seed(kid).hex()
    cfg = json.loads((flash / "config.json").read_text())
    assert cfg["device"] == number and cfg["v"] == 1
    row = reg.device(number)
    assert row is not None and row.state == "active"
    return kid


def test_provision_refused_again_then_forced(
    flash: Path, tmp_path: Path, _registry_env: Path
) -> None:
    notices = tmp_path / "notices"
    with serve_board("pico-w", flash) as b:
        deploy(b.port)
        code, out, err = cli(
            "provision",
            "--port",
            b.port,
            "--site",
            "plaza-north",
            "--notice-dir",
            str(notices),
            "--json",
        )
        assert code == 0, err
        res = json.loads(out)
        assert res["device"] == "dev-000001" and res["generation"] == 1
        assert res["kid"] == "0000000101" and res["recovered"] is None
        for p in res["notice"]:
            assert Path(p).is_file()
        # Nothing secret on the console or in the result.
        with Registry.open(_registry_env) as reg:
            kid1 = assert_consistent(flash, reg, 1)
            secret = keymod.derive(reg.master(kid1), kid1)[0].hex()
            assert secret not in out + err
            assert reg.key_entry(kid1) is not None
            assert not reg.key_entry(kid1).revoked  # type: ignore[union-attr]

        code, out, err = cli("devices", "list", "--json")
        assert code == 0
        (dev,) = json.loads(out)
        assert dev["device"] == "dev-000001" and dev["site"] == "plaza-north"
        assert dev["state"] == "active" and dev["board"] == "pico-w" and dev["verified"]

        code, _, err = cli("provision", "--port", b.port, "--site", "plaza-north")
        assert code == 2 and "already provisioned as dev-000001" in err
        assert err.count("\n") == 1

        code, out, err = cli(
            "provision",
            "--port",
            b.port,
            "--site",
            "plaza-south",
            "--force",
            "--json",
            "--notice-dir",
            str(notices),
        )
        assert code == 0, err
        res = json.loads(out)
        assert res["device"] == "dev-000001" and res["generation"] == 2 and res["forced"]
        with Registry.open(_registry_env) as reg:
            kid2 = assert_consistent(flash, reg, 1)
            assert kid2 == keymod.make_kid(1, 2)
            assert reg.key_entry(kid1).revoked  # type: ignore[union-attr]
            assert reg.device(1).site == "plaza-south"  # type: ignore[union-attr]
        # The board runs its firmware again with the new identity.
        frame = selftest_frame(b.port)
        with Registry.open(_registry_env) as reg:
            assert parse_and_open(frame, reg.key_entry).kid == kid2


def test_provision_needs_deployed_firmware(flash: Path) -> None:
    with serve_board("esp32-devkitc", flash) as b:
        code, _, err = cli("provision", "--port", b.port, "--site", "x")
    assert code == 2 and "run `atsource deploy --port" in err
    assert not (flash / "identity.json").exists()


def test_batch_of_three_boards_in_parallel(tmp_path: Path, _registry_env: Path) -> None:
    names = ["pico-w", "esp32-devkitc", "pico-w"]
    flashes = [tmp_path / f"flash{i}" for i in range(3)]
    with ExitStack() as stack:
        boards = [
            stack.enter_context(serve_board(n, f, instance=f"batch{i}"))
            for i, (n, f) in enumerate(zip(names, flashes, strict=True))
        ]
        threads = [threading.Thread(target=deploy, args=(b.port,)) for b in boards]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        args = ["provision", "--batch", "--site", "depot", "--json"]
        for b in boards:
            args += ["--port", b.port]
        code, out, err = cli(*args, "--notice-dir", str(tmp_path / "n"))
        assert code == 0, err
        items = json.loads(out)
        assert [i["ok"] for i in items] == [True, True, True]
        numbers = sorted(i["result"]["number"] for i in items)
        assert numbers == [1, 2, 3]
        with Registry.open(_registry_env) as reg:
            for item, f in zip(items, flashes, strict=True):
                assert item["port"] == boards[flashes.index(f)].port
                assert_consistent(f, reg, item["result"]["number"])
            assert len(reg.devices()) == 3


def test_power_cut_mid_provisioning_then_again(flash: Path, _registry_env: Path) -> None:
    with serve_board("pico-w", flash) as b:
        deploy(b.port)
        reg = Registry.open(_registry_env)

        boots = b.boots

        def cut(stage: str) -> None:
            if stage == "committing policy.json":  # config renamed, identity only as .new
                b.power_cut(0.3)

        with pytest.raises(DeviceError):
            provision(b.port, "plaza", registry=reg, stage=cut)
        row = reg.devices()[0]
        assert row.state == "pending" and reg.pending_kid(1) is not None
        assert not (flash / "identity.json").exists()
        b.wait_boot(boots)  # power back (board time, however busy the machine)
        res = provision(b.port, "plaza", registry=reg)
        assert res.recovered == "finished" and res.number == 1 and res.generation == 1
        assert_consistent(flash, reg, 1)
        assert len(reg.devices()) == 1 and len(reg.keys()) == 1

        # The host killed after the board got its identity, before the registry switched.
        code, _, _ = cli("keys", "revoke", "1")
        assert code == 0

        def kill(stage: str) -> None:
            if stage == "verifying a sealed frame":
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            provision(b.port, "plaza", registry=reg, force=True, stage=kill)
        pending = reg.pending_kid(1)
        assert pending is not None and pending == keymod.make_kid(1, 2)
        on_board = json.loads((flash / "identity.json").read_text())["kid"]
        assert on_board == pending.hex()
        res = provision(b.port, "plaza", registry=reg)
        assert res.recovered == "finished" and res.kid == pending.hex()
        assert assert_consistent(flash, reg, 1) == pending
        reg.close()


def test_rotation_and_revocation_seen_by_the_receiver(flash: Path, _registry_env: Path) -> None:
    with serve_board("esp32-devkitc", flash) as b:
        deploy(b.port)
        notices = str(flash.parent / "notices")  # not the working directory: workers share it
        code, _, err = cli(
            "provision", "--port", b.port, "--site", "harbour", "--notice-dir", notices
        )
        assert code == 0, err
        f1 = selftest_frame(b.port)
        with Registry.open(_registry_env) as reg:
            assert parse_and_open(f1, reg.key_entry).kid == keymod.make_kid(1, 1)

        code, out, err = cli("keys", "rotate", "dev-000001", "--port", b.port, "--grace", "1h")
        assert code == 0, err
        assert "generation 2" in out
        f2 = selftest_frame(b.port)
        with Registry.open(_registry_env) as reg:
            assert parse_and_open(f2, reg.key_entry).kid == keymod.make_kid(1, 2)
            assert parse_and_open(f1, reg.key_entry).kid == keymod.make_kid(1, 1)  # grace
            assert_consistent(flash, reg, 1)
        code, out, _ = cli("keys", "list", "1", "--json")
        states = {k["generation"]: k["state"] for k in json.loads(out)}
        assert states == {1: "retired", 2: "active"}

        # A rotation without grace: the previous generation is refused at once.
        code, _, err = cli("keys", "rotate", "1", "--port", b.port, "--grace", "0")
        assert code == 0, err
        f3 = selftest_frame(b.port)
        with Registry.open(_registry_env) as reg:
            with pytest.raises(FrameRejected, match="revoked-kid"):
                parse_and_open(f2, reg.key_entry)
            assert parse_and_open(f3, reg.key_entry).kid == keymod.make_kid(1, 3)

        # Revocation is immediate, for one generation or the whole device.
        code, out, _ = cli("keys", "revoke", "1", "--generation", "1")
        assert code == 0 and "revoked kid 0000000101" in out
        with (
            Registry.open(_registry_env) as reg,
            pytest.raises(FrameRejected, match="revoked-kid"),
        ):
            parse_and_open(f1, reg.key_entry)
        code, out, _ = cli("keys", "revoke", "dev-000001")
        assert code == 0 and "0000000103" in out
        with (
            Registry.open(_registry_env) as reg,
            pytest.raises(FrameRejected, match="revoked-kid"),
        ):
            parse_and_open(f3, reg.key_entry)
        code, out, _ = cli("devices", "list", "--json")
        assert json.loads(out)[0]["state"] == "retired"

        # The wrong board for a rotation is refused before anything is written.
        code, _, err = cli("keys", "rotate", "2", "--port", b.port)
        assert code == 2 and "no device dev-000002" in err


def test_provision_writes_the_notice_beside_the_registry_not_in_the_cwd(
    flash: Path, tmp_path: Path, _registry_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with serve_board("pico-w", flash) as b:
        deploy(b.port)
        code, out, err = cli("provision", "--port", b.port, "--site", "plaza", "--json")
    assert code == 0, err
    assert list(cwd.iterdir()) == []  # nothing written where the technician happened to be
    notice = Path(json.loads(out)["notice"][0])
    assert notice.is_file() and notice.parent == _registry_env.parent / "notices" / "dev-000001"
