from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_PKG = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"

if shutil.which("node") is None or not (_PKG / "micropython.mjs").exists():
    pytest.skip(
        "MicroPython WebAssembly engine not installed: run make setup", allow_module_level=True
    )


@pytest.fixture(scope="session", autouse=True)
def _own_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Boards served by these tests announce themselves in a directory of this session only:
    `provision --batch` and `--port auto` list every emulated board in the runtime directory,
    and another process on the machine (a developer's `atsource emulate`, another checkout's
    tests) would otherwise add its boards to ours."""
    from atsource.ports import RUNTIME_ENV

    d = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(RUNTIME_ENV, str(d))
        yield d
