"""The epsilon audit (tests/unit/test_epsilon_audit.py) on the real MicroPython VM: the gate as
deployed (.mpy, with its integer geometric sampler and HMAC generator) on an emulated board, a
smaller run. It passes at the stated epsilon; the build that withholds on the true count, kept
as a fixture, fails it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from atsource import paths
from atsource.boards import load_board
from atsource.emulator.engine import EmulatedBoard
from atsource.firmware_build import build, install
from worlds import ScriptedWorld

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from dp_audit import audit  # noqa: E402

START = 1_780_272_000 * 1_000_000
K = 10
TRUE_K = ("if noisy < k:", "if values[ids[2 * j]] < k or noisy < k:")

MAIN = (
    f"K = {K}\n"
    + """
from sensor import gate, gate_true_k
from sensor.rng import Rng

S = {"window_s": 3600, "release": ["count"], "k": K, "events_per_person": 2,
     "noise": {"mechanism": "geometric", "epsilon_milli": 1000}}


class P:
    streams = {"motion": S}
    hash4 = bytes(4)
    budget_milli = 100000


class L(gate.Ledger):
    def _save(self):
        pass


def run(mod, tag, c, n, seed):
    g = mod.Gate(P(), Rng(bytes([seed]) * 32), L("/none"))
    out = []
    for i in range(n):
        out.append(g.release("motion", 3600 * i, 3600, (c,))[0].get(6, -1))
    print("draws %s %d %s" % (tag, c, " ".join(str(x) for x in out)))


for tag, mod in (("ours", gate), ("true_k", gate_true_k)):
    n = 1200 if tag == "ours" else 400
    for j, c in enumerate((K - 1, K, K + 1, K + 2)):
        run(mod, tag, c, n, j + 1)
print("done")
"""
)


def events() -> list[tuple[str, object]]:
    ev = [("withheld", lambda o: o < 0), ("released", lambda o: o >= 0)]
    for t in (K, K + 2, K + 4):
        ev.append((f">= {t}", lambda o, t=t: o >= t))
        ev.append((f"< {t}", lambda o, t=t: o < t))
    return ev


def test_the_deployed_gate_keeps_its_epsilon_and_the_true_count_build_does_not(
    flash: Path, tmp_path: Path
) -> None:
    board = "pico-w"
    fw = tmp_path / "fw"
    (fw / "sensor").mkdir(parents=True)
    (fw / "sensor" / "__init__.py").write_text("")
    for m in ("gate", "rng", "presence", "catalogue", "policy"):
        shutil.copy(paths.FIRMWARE / "sensor" / f"{m}.py", fw / "sensor" / f"{m}.py")
    src = (fw / "sensor" / "gate.py").read_text()
    assert src.count(TRUE_K[0]) == 1
    (fw / "sensor" / "gate_true_k.py").write_text(src.replace(*TRUE_K))
    install(build(load_board(board), fw), flash)
    (flash / "main.py").write_text(MAIN)
    emu = EmulatedBoard(board, flash, world=ScriptedWorld(START), start_us=START, seed=1)
    emu.run(duration_us=60_000_000)
    lines = [line for _, line in emu.lines]
    assert "done" in lines, lines[-5:]
    draws: dict[tuple[str, int], list[int]] = {}
    for line in lines:
        if line.startswith("draws "):
            _, tag, c, *xs = line.split()
            draws[(tag, int(c))] = [int(x) for x in xs]
    ev = events()
    # Neighbours: one person (2 events) more, at and around k.
    seen = []
    for c0, c1 in ((K - 1, K + 1), (K, K + 2)):
        f = audit(draws[("ours", c0)], draws[("ours", c1)], ev, 0.01)  # type: ignore[arg-type]
        assert f.epsilon_lower <= 1.0, (c0, c1, f)
        seen.append(f.epsilon_lower)
    assert max(seen) > 0.5, "the audit sees most of the stated loss (it is not vacuous)"
    assert max(draws[("ours", K - 1)]) >= K, "a small true count can be released (noised up)"
    f = audit(draws[("true_k", K - 1)], draws[("true_k", K + 1)], ev, 0.01)  # type: ignore[arg-type]
    assert f.epsilon_lower > 3.0, f
    assert set(draws[("true_k", K - 1)]) == {-1}, "the fixture withholds on the true count"
