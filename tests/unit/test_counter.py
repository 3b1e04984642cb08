"""The persisted message counter: never reused across reboots and power cuts, few writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from powercut import Flash, PowerCut
from sensor import counter
from sensor.counter import Counter


def test_values_increase_and_resume_above_everything_used(tmp_path: Path) -> None:
    p = str(tmp_path / "counter")
    c = Counter(p, reserve=8)
    first = [c.take() for _ in range(20)]
    assert first == list(range(20))
    assert c.writes == 3 and c.ceiling == 24
    c2 = Counter(p, reserve=8)  # a reboot: resume at the ceiling, skipping the unused rest
    assert c2.take() == 24
    assert c2.next() == 25  # the name the sealer calls


def test_writes_per_day_are_bounded(tmp_path: Path) -> None:
    c = Counter(str(tmp_path / "counter"), reserve=64)
    for _ in range(96 + 4 * 24 + 96):
        c.take()
    assert c.writes == 5  # ceil(288 / 64)


def test_fresh_device_starts_at_zero_and_limit_is_2_40(tmp_path: Path) -> None:
    p = tmp_path / "counter"
    assert Counter(str(p)).take() == 0
    p.write_bytes(counter._encode(2**40 - 2))
    c = Counter(str(p), reserve=64)
    assert [c.take(), c.take()] == [2**40 - 2, 2**40 - 1]
    with pytest.raises(ValueError, match="exhausted"):
        c.take()


def test_damaged_counter_refuses_rather_than_reuse(tmp_path: Path) -> None:
    p = tmp_path / "counter"
    c = Counter(str(p))
    c.take()
    data = bytearray(p.read_bytes())
    data[6] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        Counter(str(p))
    # An interrupted write left a whole temporary file: it holds the newer ceiling.
    (tmp_path / "counter.tmp").write_bytes(counter._encode(640))
    assert Counter(str(p)).take() == 640


@pytest.mark.parametrize("torn", [False, True])
def test_power_cut_at_every_point_never_reuses_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: bool
) -> None:
    cut = 1
    while True:
        d = tmp_path / f"{torn}-{cut}"
        d.mkdir()
        p = str(d / "counter")
        used: list[int] = []
        # Two boots that run to completion, then one with a cut at operation `cut`.
        for _ in range(2):
            c = Counter(p, reserve=4)
            used += [c.take() for _ in range(5)]
        flash = Flash(cut_at=cut, torn=torn)
        with monkeypatch.context() as m:
            flash.patch(m, counter)
            try:
                c = Counter(p, reserve=4)
                for _ in range(9):
                    used.append(c.take())
                done = True
            except PowerCut:
                done = False
        c = Counter(p, reserve=4)
        after = [c.take() for _ in range(6)]
        assert len(set(used + after)) == len(used) + len(after), (cut, used, after)
        assert min(after) > max(used)
        if done:
            break
        cut += 1
    assert cut > 3  # every operation of a few reservations was cut once


def test_a_vanished_counter_stops_sealing_instead_of_restarting(tmp_path) -> None:
    import pytest
    from sensor.counter import Counter

    path = str(tmp_path / "counter")
    c = Counter(path, 4)
    assert [c.take() for _ in range(3)] == [0, 1, 2]
    assert Counter(path, 4, fresh=False).take() == 4  # resumes at the ceiling
    import os

    os.remove(path)
    with pytest.raises(ValueError, match="counter missing"):
        Counter(path, 4, fresh=False)
