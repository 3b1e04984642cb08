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
