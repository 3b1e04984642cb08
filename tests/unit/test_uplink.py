"""Record -> seal -> outbox -> transport under CPython: order, outages, reboots, budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from atsource import frame as rx
from atsource.keys import derive, make_kid
from fakes import Clock
from sensor import cbor
from sensor.identity import Identity
from sensor.uplink import Uplink

KID = make_kid(7, 1)
KEY, IV = derive(bytes(range(16)), KID)
IDENT = Identity(KID, KEY, IV, bytes(32))


def record(i: int) -> bytes:
    return cbor.dumps({0: 1780272000 + 900 * i, 1: 900, 2: b"\x01\x02\x03\x04", 7: 1, 3: i})


class Link:
    """The far end of a transport: takes frames while up; each send costs `cost_ms`."""

    def __init__(self, clock: Clock, cost_ms: int = 0) -> None:
        self.up = True
        self.frames: list[bytes] = []
        self.clock = clock
        self.cost_ms = cost_ms
        self.polls = 0

    def send(self, frame: bytes) -> bool:
        self.clock.t += self.cost_ms
        if self.up:
            self.frames.append(frame)
        return self.up

    def poll(self) -> None:
        self.polls += 1

    def close(self) -> None:
        pass


def open_all(frames: list[bytes]) -> list[rx.Opened]:
    entry = rx.KeyEntry(KEY, IV)
    out = []
    for f in frames:
        o = rx.parse_and_open(f, lambda kid: entry if kid == KID else None)
        entry.replay.accept(o.piv)
        out.append(o)
    return out


def make(root: Path, link: Link, clock: Clock, **cfg: int) -> Uplink:
    return Uplink(IDENT, dict(cfg), transport=link, root=str(root), clock=clock, fresh=True)


def test_submit_and_pump_deliver_in_order(tmp_path: Path) -> None:
    clock = Clock()
    link = Link(clock)
    up = make(tmp_path, link, clock)
    for i in range(5):
        assert up.submit(record(i))
        assert up.pump() == 1 and up.depth == 0
    opened = open_all(link.frames)
    assert [o.piv for o in opened] == [0, 1, 2, 3, 4]
    assert [o.record[3] for o in opened] == [0, 1, 2, 3, 4]
    assert len(link.frames[0]) == len(link.frames[4])  # padded to one bucket
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter"]  # outbox drained


def test_outage_then_everything_in_order_and_reboot_keeps_both(tmp_path: Path) -> None:
    clock = Clock()
    link = Link(clock)
    up = make(tmp_path, link, clock, counter_reserve=4)
    link.up = False
    for i in range(10):
        up.submit(record(i))
        assert up.pump() == 0
    assert up.depth == 10 and link.frames == [] and link.polls == 10
    up = make(tmp_path, link, clock, counter_reserve=4)  # a reboot during the outage
    assert up.depth == 10
    up.submit(record(10))
    link.up = True
    assert up.pump() == 11 and up.depth == 0
    opened = open_all(link.frames)
    assert [o.record[3] for o in opened] == list(range(11))
    pivs = [o.piv for o in opened]
    assert pivs[:10] == list(range(10)) and pivs[10] == 12  # resumed at the ceiling


def test_full_outbox_drops_oldest_and_reports_it(tmp_path: Path) -> None:
    clock = Clock()
    link = Link(clock)
    link.up = False
    up = make(tmp_path, link, clock, outbox_frames=4)
    for i in range(10):
        up.submit(record(i))
    assert up.depth == 4 and up.dropped == 6
    link.up = True
    up.pump()
    assert [o.record[3] for o in open_all(link.frames)] == [6, 7, 8, 9]
    assert up.dropped == 6 and make(tmp_path, link, clock, outbox_frames=4).dropped == 6


def test_pump_stops_at_its_time_budget(tmp_path: Path) -> None:
    clock = Clock()
    link = Link(clock, cost_ms=400)
    link.up = False
    up = make(tmp_path, link, clock)
    for i in range(10):
        up.submit(record(i))
    link.up = True
    assert up.pump(budget_ms=1000) == 3  # sends start at 0, 400 and 800 ms
    assert up.depth == 7
    assert up.pump(budget_ms=10_000) == 7


def test_oversized_record_is_refused(tmp_path: Path) -> None:
    clock = Clock()
    up = make(tmp_path, Link(clock), clock)
    with pytest.raises(ValueError):
        up.submit(bytes(300))
