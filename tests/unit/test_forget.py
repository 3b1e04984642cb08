"""sensor.forget(): a module needed only at boot or on a rare path leaves RAM, namespace and all."""

from __future__ import annotations

import sys
from pathlib import Path

import sensor
from sensor import forget
from sensor.outbox import Outbox


def test_forget_drops_the_module_and_empties_its_namespace() -> None:
    from sensor import outboxfix

    mod = outboxfix
    assert "recover" in mod.__dict__
    forget("outboxfix", "not-a-module")
    assert "sensor.outboxfix" not in sys.modules
    assert not hasattr(sensor, "outboxfix")
    # A stale reference to the module object keeps nothing of its code alive.
    assert mod.__dict__ == {}


def test_the_outbox_loads_its_rare_paths_again_when_it_needs_them(tmp_path: Path) -> None:
    p = str(tmp_path / "outbox.log")
    ob = Outbox(p)
    assert "sensor.outboxfix" not in sys.modules  # forgotten once the log was read back
    ob.append(b"frame-1")
    ob.append(b"frame-2")
    forget("outboxfix")
    again = Outbox(p)  # reads the log back through a fresh copy of the module
    assert list(again) == [b"frame-1", b"frame-2"]
    assert "sensor.outboxfix" not in sys.modules


def test_a_rare_path_inside_another_keeps_the_module(tmp_path: Path) -> None:
    # Making room on a full flash finds the oldest entry damaged: the outbox reads the log
    # back (recover) in the middle of make_room, which then goes on compacting. The module
    # must stay whole until the outer call is done.
    p = tmp_path / "outbox.log"
    ob = Outbox(str(p))
    for i in range(10):
        ob.append(b"frame-%d" % i)
    data = bytearray(p.read_bytes())
    data[8 + 6] ^= 0xFF  # the first entry's frame: its CRC no longer matches
    p.write_bytes(bytes(data))
    assert ob.shed()  # no NameError from a module emptied under it
    assert "sensor.outboxfix" not in sys.modules
    assert list(Outbox(str(p))) == list(ob)
