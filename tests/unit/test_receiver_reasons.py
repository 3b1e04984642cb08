"""Receiver reasons that tell the truth (issue 15): a resend of a stored frame is `duplicate`,
apart from `too-old` (a real loss); capture files with a UTF-8 BOM or an endless line."""

from __future__ import annotations

import io
import json
from pathlib import Path

from atsource import keys
from atsource.cli import main as cli_main
from atsource.frame import KeyEntry, ReplayWindow
from atsource.receiver import FileSource, Receiver, read_capture
from atsource.store import SQLiteStore
from click.testing import CliRunner
from fakes import Counter
from sensor import cbor, sealer

KID = keys.make_kid(0x00000042, 1)
KEY, IV = keys.derive(bytes(range(16)), KID)
REC = {0: 1780272000, 1: 900, 2: bytes(4), 7: 6, 20: 1}
ENTRIES = {KID: KeyEntry(KEY, IV)}
S = ReplayWindow.SIZE  # counters this far below the highest are too old


def seal(n: int) -> bytes:
    return sealer.Sealer(KID, KEY, IV, Counter(n)).seal(sealer.pad(cbor.dumps(REC)))


def test_a_resent_backlog_is_duplicate_not_too_old(tmp_path: Path) -> None:
    """A power cut mid-pump: the board sends its 100-frame backlog again, after a frame that
    put the first 69 counters behind the window. The resends are counted as duplicates (or
    replays inside the window), never as too-old; a frame that was never stored and falls
    behind the window is the only too-old."""
    db = tmp_path / "r.db"
    with SQLiteStore(db) as store:
        rx = Receiver(store, ENTRIES.get)
        sent = [n for n in range(101) if n != 5]  # 5 is lost on the way
        assert all(rx.submit(seal(n)).accepted for n in sent)
        assert rx.submit(seal(S + 68)).accepted  # 0 to 68 are now S or more below: too old
        resent = [rx.submit(seal(n)).reason for n in range(100)]
        late = rx.submit(seal(5)).reason  # the lost one turns up, behind the window
    assert resent.count("duplicate") == 68 and resent.count("replay") == 31
    assert resent[:69] == ["duplicate"] * 5 + ["too-old"] + ["duplicate"] * 63
    assert resent[5] == "too-old"  # never stored: a real loss, not a duplicate
    assert late == "too-old"
    r = CliRunner().invoke(cli_main, ["receive", "--db", str(db), "--stats", "--json"])
    rej = json.loads(r.stdout)["stats"]["rejected"]
    assert (rej["duplicate"], rej["replay"], rej["too-old"]) == (68, 31, 2)


def test_a_tampered_old_frame_is_not_called_a_duplicate() -> None:
    rx = Receiver(SQLiteStore(":memory:"), ENTRIES.get)
    for n in [*range(40), S + 39]:
        assert rx.submit(seal(n)).accepted
    f = seal(0)
    assert rx.submit(f[:-1] + bytes([f[-1] ^ 1])).reason == "too-old"
    assert rx.submit(f).reason == "duplicate"  # the authentic copy is one


def test_a_capture_with_a_bom_and_an_endless_line(tmp_path: Path) -> None:
    cap = tmp_path / "up.hex"
    body = f"{seal(1).hex()}\n{'ab' * 1_000_000}\n{seal(2).hex()}\n"
    cap.write_bytes(b"\xef\xbb\xbf" + body.encode())
    with SQLiteStore(":memory:") as store:
        summary = FileSource(cap).run(Receiver(store, ENTRIES.get))
    assert (summary.accepted, summary.bad_lines) == (2, 1)

    # Stdin (`--from -`) is read as text: the BOM arrives as U+FEFF before the first frame.
    lines = list(read_capture(io.StringIO("\ufeff" + seal(1).hex() + "\n")))
    assert lines == [(1, seal(1))]
