"""MicroPython's own test suite against an emulated board, through its serial port.

    python -m atsource.devtools.mpy_suite --micropython DIR [--board pico-w] [--json] [TESTS...]

DIR is a checkout of micropython (v1.29, the engine's release): its unmodified
``tests/run-tests.py -t port:PTY`` drives the board as it drives a real one. Each failure is
then run on the bare VM (the WebAssembly build under Node, no emulator around it) and compared
with the same expected output, so the report says which failures are the emulator's (the bare
VM passes) and which are the VM's own. Exit status 1 when the emulator has any failure of its
own. Nobody here wrote these tests: that is the point (docs/testing.md).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import paths


def _serve(board: str, flash: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "atsource.cli", "emulate", board, "--serial", "--erase",
         "--flash", str(flash), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        m = re.search(r"serial: (/dev/\S+)", line)
        if m:
            return proc, m.group(1)
    raise SystemExit(f"mpy_suite: the emulator printed no serial port (exit {proc.wait()})")


# The bare VM: the engine loaded in Node, nothing else (not the package's own CLI, which patches
# asyncio.run in), and the file run through the VM's raw REPL, the path run-tests takes on a
# board (what prints after the program ends, e.g. finalisers run by a collection on return to
# JavaScript, is not part of its output there either).
_BARE = """
import fs from "node:fs";
const { loadMicroPython } = await import(process.argv[2]);
const mp = await loadMicroPython({ stdout: (b) => process.stdout.write(b), linebuffer: false });
mp.replInit();
const feed = (s) => { for (let i = 0; i < s.length; i++) mp.replProcessChar(s.charCodeAt(i)); };
feed("\\x01");
feed(fs.readFileSync(process.argv[3], "latin1"));
feed("\\x04");
"""


def _bare_vm_passes(tests_dir: Path, test: str, runner: Path) -> bool:
    """Run one test file straight on the VM; compare with its .exp (or CPython's output)."""
    src = tests_dir / test
    engine = paths.ROOT / "node_modules/@micropython/micropython-webassembly-pyscript"
    r = subprocess.run(
        [paths.node_binary(), str(runner), str(engine / "micropython.mjs"), str(src)],
        capture_output=True, cwd=src.parent, timeout=120,
    )  # fmt: skip
    # raw REPL: "OK", the program's output, then \x04 (then its errors, then \x04).
    out = r.stdout
    start = out.find(b"OK")
    got = out[start + 2 :].split(b"\x04", 1)[0] if start >= 0 else b""
    got = got.replace(b"\r\n", b"\n")
    exp_file = src.with_suffix(".py.exp")
    if exp_file.exists():
        want = exp_file.read_bytes()
    else:
        c = subprocess.run(
            [sys.executable, "-B", str(src)], capture_output=True, cwd=src.parent, timeout=120
        )
        want = c.stdout
    return got == want


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mpy_suite", description=__doc__.splitlines()[0])
    ap.add_argument("--micropython", type=Path, required=True, help="a micropython checkout")
    ap.add_argument("--board", default="pico-w")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("tests", nargs="*", help="test files or directories (default: the suite)")
    a = ap.parse_args(argv)
    tests_dir = a.micropython / "tests"
    if not (tests_dir / "run-tests.py").is_file():
        print(f"mpy_suite: no tests/run-tests.py in {a.micropython}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = _serve(a.board, Path(tmp) / "flash")
        try:
            r = subprocess.run(
                [sys.executable, "run-tests.py", "-t", f"port:{port}", "-r",
                 str(Path(tmp) / "results"), *a.tests],
                cwd=tests_dir, capture_output=True, text=True,
            )  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    out = r.stdout
    counts = {
        k: int(m.group(1)) if (m := re.search(rf"(\d+) tests? {k}", out)) else 0
        for k in ("passed", "skipped", "failed")
    }
    failed = re.findall(r"^FAIL\s+(\S+)", out, re.M)
    # run-tests takes the board for the WebAssembly port (sys.platform is the VM's) and sends
    # it the port's JavaScript API tests (.js, .mjs): they test the browser API, not a board.
    js_api = [t for t in failed if t.endswith((".js", ".mjs"))]
    failed = [t for t in failed if t not in js_api]
    with tempfile.TemporaryDirectory() as tmp:
        runner = Path(tmp) / "bare.mjs"
        runner.write_text(_BARE)
        ours = [t for t in failed if _bare_vm_passes(tests_dir, t, runner)]
    report = {
        "board": a.board,
        **counts,
        "js_api_tests_not_applicable": js_api,
        "failed_tests": failed,
        "emulator_failures": ours,  # the bare VM passes these: the emulator is at fault
        "vm_failures": [t for t in failed if t not in ours],
    }
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{a.board}: {counts['passed']} passed, {counts['failed']} failed, "
            f"{counts['skipped']} skipped; emulator's own failures: {len(ours)}"
        )
        for t in ours:
            print(f"  emulator: {t}")
        for t in report["vm_failures"]:
            print(f"  VM:       {t}")
    return 1 if ours else 0


if __name__ == "__main__":
    raise SystemExit(main())
