"""`atsource demo` for a city official: a board that fails mid-run leaves a partial report
naming it (and the other boards' results); progress is shown during the simulated day; the
report folder is self-contained (embedded plots and notices, relative links, UTC axes)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from atsource.demo import Member, run_demo
from atsource.errors import DeviceError

FLEET = (
    Member("pico-w", "residential", "elm-street"),
    Member("esp32-devkitc", "residential", "oak-street", seed=23),
)


@pytest.mark.slow
def test_a_failing_board_leaves_a_partial_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    said: list[str] = []

    def say(text: str) -> None:
        said.append(text)
        if text.startswith("public register of"):
            # Between provisioning and the day: the second board gets an application that
            # hangs without ever calling the board layer (the emulator stops it as stalled).
            app = out / "flash" / "demo-2" / "sensor"
            (app / "app.mpy").unlink()
            (app / "app.py").write_text("def setup():\n    while True:\n        pass\n")

    env_before = dict(os.environ)
    with pytest.raises(DeviceError, match=r"^1 board\(s\) failed \(dev-000002: .*partial report"):
        run_demo(out, say=say, fleet=FLEET)
    assert dict(os.environ) == env_before  # the demo runs inside other programs: no leak
    assert (out / "registry.db.key").exists()  # its own key, beside its own registry
    assert any(re.fullmatch(r"  dev-00000[12]: (6|12|18) h of 24 simulated", s) for s in said)
    assert any(s.startswith("  dev-000002: FAILED: ") for s in said)

    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["failed"]) == ["dev-000002"]
    page = (out / "report.html").read_text()
    assert "Partial report: 1 board(s) failed" in page and "dev-000002" in page
    assert "No trace of any of the" in page and "<details>" in page
    assert "How far from the truth, and why" in page

    # Moved elsewhere, the report still holds everything it shows: no absolute path, no file:
    # link, embedded images, relative links that resolve inside the folder.
    moved = tmp_path / "archive" / "report"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    page = (moved / "report.html").read_text()
    assert str(tmp_path) not in page and "file:" not in page
    assert page.count("data:image/png") >= 3  # climate, people, one notice
    for link in re.findall(r"href='([^']+)'", page):
        assert (moved / link).exists(), link
