"""Type-check the firmware once per MicroPython port with pyright.

Each port gets its own pass against that port's stub package only (``.stubs/<port>``, installed
by ``make setup``), so firmware that uses a module or attribute a port lacks fails that port's
pass: ``import esp32`` fails rp2, ``import rp2`` or ``machine.TouchPad`` fails esp32, and
CPython-only modules (``subprocess``, ``threading``...) fail both.

How a pass is isolated from CPython (see ``pyright_config``):

* ``typeshedPath`` points at the port's stub directory, whose ``stdlib/`` (from
  micropython-stdlib-stubs) *replaces* pyright's bundled CPython typeshed; ``stubPath`` points
  at the same directory for the port modules (``machine``, ``time``, ``esp32``...). This is the
  setup micropython-stubs documents for pyright (``stubPath`` = ``typeshedPath`` = the pip
  ``--target`` directory).
* ``venvPath``/``venv`` name an empty, generated environment, so pyright neither runs a Python
  interpreter nor resolves imports from its standard library or site-packages.
* ``pythonPlatform`` is ``All`` so that ``sys.platform`` tests stay live: with ``Linux`` (the
  stubs' suggestion) pyright would treat ``if sys.platform == "esp32":`` as dead code and never
  check it on any port. For port-specific code that each pass should see only on its own port,
  write ``from sys import platform`` / ``if platform == "esp32":``; ``defineConstant`` sets
  ``platform`` to the port's ``sys.platform`` value, so the other port's branch is unreachable.

Usage::

    python -m atsource.devtools.typecheck                 # firmware/, both ports
    python -m atsource.devtools.typecheck --port rp2 DIR  # one port, another tree

Exit status: 0 when every port passes, 1 when any port has errors, 2 when pyright or a stub
package is missing or pyright itself fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

REPO_ROOT = Path(__file__).resolve().parents[3]

#: Port name -> stub directory under ``.stubs`` (also the port's ``sys.platform`` value).
PORTS: dict[str, str] = {"esp32": "esp32", "rp2": "rp2"}

#: Language level used to parse the firmware. Pinned so the result does not depend on whichever
#: interpreter pyright would otherwise probe; matches ruff's ``target-version``. It rejects
#: 3.12-only syntax (``type`` aliases, PEP 695 generics) that MicroPython cannot compile while
#: accepting ``X | None`` annotations (MicroPython parses annotations but never evaluates them).
PYTHON_VERSION = "3.11"

#: Diagnostic overrides on top of pyright's ``basic`` mode.
RULE_OVERRIDES: dict[str, str] = {
    # A port module/package that this port lacks, or a CPython-only module.
    "reportMissingImports": "error",
    # ``machine.TouchPad`` on rp2, ``time.perf_counter`` anywhere.
    "reportAttributeAccessIssue": "error",
    # Stub-only modules (machine, time, ...) have no source on the host; that is expected.
    "reportMissingModuleSource": "none",
}


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    column: int
    severity: str
    message: str
    rule: str

    def render(self) -> str:
        path = _display_path(Path(self.file))
        rule = f" ({self.rule})" if self.rule else ""
        message = self.message.replace("\n", "\n    ")
        return f"  {path}:{self.line}:{self.column} - {self.severity}: {message}{rule}"


@dataclass
class PortResult:
    port: str
    files: int = 0
    diagnostics: list[Diagnostic] = field(default_factory=list[Diagnostic])
    failure: str | None = None  # pyright did not run or produced no report

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def ok(self) -> bool:
        return self.failure is None and not self.errors

    def render(self) -> str:
        head = f"typecheck {self.port}: "
        if self.failure is not None:
            return head + "FAILED: " + self.failure
        if self.ok:
            warnings = len(self.diagnostics)
            extra = f", {warnings} warning{'s' if warnings != 1 else ''}" if warnings else ""
            head += f"ok ({_plural(self.files, 'file')}{extra})"
        else:
            head += (
                f"FAILED ({_plural(len(self.errors), 'error')} in {_plural(self.files, 'file')})"
            )
        return "\n".join([head, *(d.render() for d in self.diagnostics)])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _relative(target: Path, start: Path) -> str:
    """pyright wants ``include`` (and execution roots) relative to the config file."""
    return Path(os.path.relpath(target, start)).as_posix()


def default_import_root(paths: Sequence[Path]) -> Path:
    """``firmware/`` when every path lies inside it, else the paths' common directory."""
    firmware = (REPO_ROOT / "firmware").resolve()
    if all(p == firmware or firmware in p.parents for p in paths):
        return firmware
    dirs = [p if p.is_dir() else p.parent for p in paths]
    return Path(os.path.commonpath(dirs))


def pyright_config(
    port: str, stubs: Path, paths: Sequence[Path], import_root: Path, config_dir: Path
) -> dict[str, Any]:
    """The pyright configuration for one port's pass (written to ``config_dir``)."""
    return {
        "include": [_relative(p, config_dir) for p in paths],
        # firmware/ is the import root: ``import sensor.bme280`` -> firmware/sensor/bme280.py.
        "executionEnvironments": [{"root": _relative(import_root, config_dir)}],
        "typeCheckingMode": "basic",
        "pythonVersion": PYTHON_VERSION,
        "pythonPlatform": "All",
        "defineConstant": {"platform": PORTS[port]},
        # The port's stubs replace CPython's typeshed: stdlib/ and port modules both.
        "typeshedPath": str(stubs),
        "stubPath": str(stubs),
        # An empty environment: no interpreter is run, no CPython site-packages or stdlib.
        "venvPath": ".",
        "venv": "isolated-env",
        **RULE_OVERRIDES,
    }


def write_config(
    port: str, stubs: Path, paths: Sequence[Path], import_root: Path, build_dir: Path
) -> Path:
    config_dir = (build_dir / port).resolve()
    (config_dir / "isolated-env" / "lib" / "site-packages").mkdir(parents=True, exist_ok=True)
    config = pyright_config(port, stubs, paths, import_root, config_dir)
    config_file = config_dir / "pyrightconfig.json"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config_file


def parse_report(port: str, returncode: int, stdout: str, stderr: str) -> PortResult:
    """Turn pyright's ``--outputjson`` report (exit 0: clean, 1: errors) into a result."""
    report: Any
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        report = None
    if returncode not in (0, 1) or not isinstance(report, dict):
        detail = (stderr.strip() or stdout.strip() or "no output").splitlines()
        return PortResult(port, failure=f"pyright exited {returncode}: " + " | ".join(detail[:5]))
    data = cast("dict[str, Any]", report)
    raw: list[dict[str, Any]] = data.get("generalDiagnostics", [])
    diagnostics: list[Diagnostic] = []
    for d in raw:
        if d.get("severity") not in ("error", "warning"):
            continue  # "information" (e.g. reveal_type) does not belong in a lint report
        start: dict[str, int] = d.get("range", {}).get("start", {})
        diagnostics.append(
            Diagnostic(
                file=str(d.get("file", "?")),
                line=start.get("line", -1) + 1,
                column=start.get("character", -1) + 1,
                severity=str(d["severity"]),
                message=str(d.get("message", "")),
                rule=str(d.get("rule", "")),
            )
        )
    summary: dict[str, Any] = data.get("summary", {})
    return PortResult(port, files=int(summary.get("filesAnalyzed", 0)), diagnostics=diagnostics)


def run(
    ports: Sequence[str],
    paths: Sequence[Path],
    *,
    import_root: Path,
    stubs_root: Path,
    pyright: Path,
    build_dir: Path,
) -> list[PortResult]:
    """Run one pyright pass per port (concurrently) and collect the results in port order."""
    procs: list[tuple[str, subprocess.Popen[str]]] = []
    results: dict[str, PortResult] = {}
    for port in ports:
        config = write_config(port, stubs_root / port, paths, import_root, build_dir)
        try:
            proc = subprocess.Popen(
                [str(pyright), "--outputjson", "--project", str(config)],
                cwd=config.parent,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        except OSError as exc:
            results[port] = PortResult(port, failure=f"cannot run {pyright}: {exc}")
            continue
        procs.append((port, proc))
    for port, proc in procs:
        stdout, stderr = proc.communicate()
        results[port] = parse_report(port, proc.returncode, stdout, stderr)
    return [results[port] for port in ports]


def _missing_prerequisites(ports: Sequence[str], stubs_root: Path, pyright: Path) -> list[str]:
    problems: list[str] = []
    if not pyright.is_file():
        problems.append(f"pyright not found at {pyright} (run `make setup`)")
    for port in ports:
        if not (stubs_root / port / "machine.pyi").is_file():
            problems.append(f"{port} stubs not found in {stubs_root / port} (run `make setup`)")
    return problems


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m atsource.devtools.typecheck",
        description="Type-check MicroPython firmware with pyright, once per port.",
    )
    parser.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="files or directories to check (default: firmware/)",
    )
    parser.add_argument(
        "--port",
        action="append",
        choices=sorted(PORTS),
        dest="ports",
        help="port to check against (repeatable; default: every port)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="import root, as the board's / (default: firmware/ if every PATH is inside it, "
        "else the PATHs' common directory)",
    )
    parser.add_argument(
        "--stubs",
        type=Path,
        default=REPO_ROOT / ".stubs",
        help="directory holding one stub directory per port (default: .stubs)",
    )
    parser.add_argument(
        "--pyright",
        type=Path,
        default=REPO_ROOT / "node_modules" / ".bin" / "pyright",
        help="pyright executable (default: node_modules/.bin/pyright)",
    )
    parser.add_argument(
        "--build-dir",
        type=Path,
        default=REPO_ROOT / "build" / "typecheck",
        help="where the per-port pyrightconfig.json files go (default: build/typecheck)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ports: list[str] = list(dict.fromkeys(args.ports or PORTS))
    paths = [p.resolve() for p in (args.paths or [REPO_ROOT / "firmware"])]
    stubs_root: Path = args.stubs.resolve()
    pyright: Path = args.pyright.resolve()

    problems = _missing_prerequisites(ports, stubs_root, pyright)
    problems += [f"no such file or directory: {p}" for p in paths if not p.exists()]
    if problems:
        for problem in problems:
            print(f"typecheck: {problem}", file=sys.stderr)
        return 2

    import_root = args.root.resolve() if args.root else default_import_root(paths)
    results = run(
        ports,
        paths,
        import_root=import_root,
        stubs_root=stubs_root,
        pyright=pyright,
        build_dir=args.build_dir,
    )
    for result in results:
        print(result.render(), flush=True)
    if any(r.failure is not None for r in results):
        return 2
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
