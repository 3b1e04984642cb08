"""The main job end to end: `atsource demo` on a fresh output directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_receives_every_frame_and_passes_the_audit(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = subprocess.run(
        [sys.executable, "-m", "atsource.cli", "demo", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ATSOURCE_CACHE": str(tmp_path)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    devices = summary["devices"]
    assert len(devices) >= 3 and {d["board"] for d in devices} == {"esp32-devkitc", "pico-w"}
    assert len({d["scenario"] for d in devices}) >= 2
    for d in devices:
        # A day: 96 env + 96 health + 24 x (door in, door out, motion, ble) = 288 records,
        # less the windows a scenario's power cut or the first minutes took away.
        assert d["frames_sent"] > 250, d
        assert d["frames_stored"] == d["frames_sent"] and d["missing"] == 0, d
        assert d["rejected"] == {}
    assert summary["audit"]["passed"], summary["audit"]
    report = Path(summary["report"])
    page = report.read_text()
    assert "Privacy audit" in page and "PASS" in page and page.count("data:image/png") >= 5
    assert not any(s in page for s in ('src="http', "src='http"))
    notices = list((out / "notices").rglob("notice.png"))
    assert len(notices) == len(devices)
