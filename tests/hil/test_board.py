"""The hardware-in-loop suite, written once: every test runs against each board given with
``pytest --board PORT|emulated:BOARD`` (default: both emulated boards). docs/testing.md.

Board time: the test policy closes every window after ``dut.window_s`` seconds (60); an
emulated board runs at ``--board-speed`` (60x), a real one in real time. Waits (``expect``,
``wait_frames``, ``dut.wait``) are given in board seconds: the wall clock for a real board, the
virtual clock for an emulated one, so a busy machine slows a test down but never fails it.
"""

from __future__ import annotations

import re

import pytest
from atsource.audit import Auditor
from atsource.pytest_plugin import BOOT_RE, STREAMS, Dut

# What a BME280 can report at all, and what a street can plausibly have.
TEMP_C = (-40.0, 85.0)
RH = (0.0, 100.0)
PRESSURE_PA = (30_000, 110_000)


def test_boot_line_names_the_board_and_counts_boots(dut: Dut) -> None:
    first = dut.expect(BOOT_RE)
    assert first.group(1) == dut.board_name
    dut.reset()
    again = dut.expect(BOOT_RE)
    assert again.group(1) == dut.board_name
    assert int(again.group(2)) == int(first.group(2)) + 1
    # Provisioned: the policy is in force, no stream refused.
    dut.expect(r"^policy [0-9a-f]{8} in force: ")


def test_env_window_has_plausible_values(dut: Dut) -> None:
    # The first window after a restart is partial and may hold no sample (samples fall
    # mid-period on the wall clock); the second is whole.
    f = next(f for f in dut.wait_frames("env", 2) if 3 in f.record)
    r = f.record
    assert r[1] == dut.window_s and r[0] % dut.window_s == 0
    assert r[2] == dut.policy_hash4
    t, rh, p = r[3] / 100, r[4] / 100, r[5]
    assert TEMP_C[0] <= r[10] / 100 <= t <= r[11] / 100 <= TEMP_C[1]
    assert RH[0] <= r[12] / 100 <= rh <= r[13] / 100 <= RH[1]
    assert PRESSURE_PA[0] <= r[14] <= p <= r[15] <= PRESSURE_PA[1]
    assert r[8] >= 1 and r[8] + r[9] <= dut.window_s // 5 + 1  # samples + lost fit the window
    if dut.world is not None:
        truth = {w["start"]: w for w in dut.world.ground_truth(dut.window_s)}[r[0]]
        assert abs(t - truth["temp_mean_c"]) < 1.0
        assert abs(rh - truth["rh_mean"]) < 3.0
        assert abs(p - truth["pressure_mean_pa"]) < 100


def test_windows_close_on_cadence(dut: Dut) -> None:
    env = dut.wait_frames("env", 3)
    health = dut.wait_frames("health", 3)
    w = dut.window_s
    for series in (env, health):
        starts = [f.record[0] for f in series]
        assert all(s % w == 0 for s in starts)
        assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [w, w]
    # Every window releases its env record before its health record, in counter order.
    by_start = {f.record[0]: f.piv for f in health}
    for f in env:
        if f.record[0] in by_start:
            assert f.piv < by_start[f.record[0]]
    assert [f.piv for f in env] == sorted(f.piv for f in env)


def test_privacy_audit_of_everything_the_board_emitted(dut: Dut) -> None:
    # A few windows of every stream, people streams included (the world's crowd, if any).
    dut.wait_frames("ble", 2)
    frames = dut.fetch_frames()
    own = [x for x in (dut.masked("__import__('machine').unique_id()"),) if x]
    if dut.world is not None:
        heard = dut.world.names_and_addresses(reported_only=True)
        assert heard["addresses"], "the board heard no adverts: nothing to audit"
        ids = dut.world.names_and_addresses()
        addresses, names = list(ids["addresses"]) + own, list(ids["names"])
    else:
        # No crowd we know of near a real board: its own identifiers stand in for one.
        addresses, names = own, []
    files = dut.data_files()
    blobs = [("console", dut.console_bytes())]
    blobs += [(f"flash:{p}", data) for p, data in files.items()]
    blobs += [(f"frame piv {f.piv}", f.plaintext) for f in frames]
    result = Auditor(addresses, names).scan(blobs)
    assert result.passed, f"{result.summary()}: {[(h.source, h.form) for h in result.hits[:5]]}"
    assert result.sources >= 3 and frames

    # The device's own secrets never leave it (they live only in /identity.json).
    leaks = Auditor(dut.device_secrets(), []).scan(
        [b for b in blobs if b[0] != "flash:/identity.json"]
    )
    assert leaks.passed, [(h.source, h.form) for h in leaks.hits[:5]]
    # The console shows released records only: no bench-mode raw aggregates.
    assert not [ln for ln in dut.log if ln.startswith("win ")]


def test_sealed_selftest_frame_opens_on_the_host(dut: Dut) -> None:
    f = dut.selftest()
    assert f.kid == dut.kid
    assert f.record[7] == 15 and f.record[2] == dut.policy_hash4
    out = dut.exec("print(open('/identity.json').read()[:0] + 'ok')")
    assert out.strip() == "ok"


def test_counter_survives_reset(dut: Dut) -> None:
    (released,) = dut.wait_frames("env")
    before = dut.selftest()
    assert before.piv > released.piv
    dut.reset()
    dut.expect(BOOT_RE)
    after = dut.selftest()
    assert after.piv > before.piv
    # The firmware's own sealing carries on above every value used before the reset.
    dut.start()
    (later,) = dut.wait_frames("health")
    assert later.piv > after.piv


@pytest.mark.emulated_only
def test_counter_survives_power_cut(dut: Dut) -> None:
    dut.wait_frames("env")
    before = max(f.piv for f in dut.frames)
    dut.power_cut(1.0)
    dut.expect(BOOT_RE, within=10)
    (after,) = dut.wait_frames("health", within=3 * dut.window_s)
    assert after.piv > before


def test_outbox_survives_reset_with_pending_frames(dut: Dut) -> None:
    if dut.emulated:
        dut.inject("net", False)  # frames stay in the outbox
    # (A real board's host link has no taker: its frames stay in the outbox anyway.)
    for _ in range(2):
        dut.expect(r"^rel health ", within=2 * dut.window_s)
    pending = dut.outbox()
    assert len(pending) >= 2
    dut.reset()
    dut.expect(BOOT_RE)
    if not dut.emulated:
        kept = dut.outbox()
        assert kept[: len(pending)] == pending
        return
    dut.inject("net", True)
    got = _wait_delivered(dut, pending, 3 * dut.window_s)
    opened = [f for f in dut.frames if f.piv in got]
    assert len(opened) == len(pending)  # each opens with the device key
    assert not dut.rejected


def _wait_delivered(dut: Dut, pending: list[bytes], within: float) -> set[int]:
    from atsource.frame import decode_envelope

    want = set(pending)

    def delivered() -> set[int] | None:
        if not want <= set(dut._raw_frames):  # frames the host link delivered, as sent
            return None
        return {int.from_bytes(dict(decode_envelope(f).unprotected)[6], "big") for f in want}

    return dut.wait(delivered, within, "pending frames not delivered")


def test_every_board_has_its_own_identity(duts: list[Dut]) -> None:
    kids = [d.selftest().kid for d in duts]
    assert len(set(kids)) == len(kids)
    for d in duts:
        d.start()
    for d in duts:
        d.expect(BOOT_RE)
        assert re.fullmatch(r"[0-9a-f]{10}", d.kid.hex())
        assert STREAMS["env"] == 1
