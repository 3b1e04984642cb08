"""`atsource provision` and key rotation: identity, keys, config and policy onto a board.

One provisioning, in an order that makes an interruption (a kill, a pulled cable, a power cut)
harmless:

1. Connect (Ctrl-C, raw REPL, soft reset), check the firmware is deployed, read the board's
   unique id (the registry keeps only its hash) and what the board already holds.
2. Registry, one transaction: allocate the device number and a *pending* key generation whose
   master secret and RNG seed are drawn on the host and sealed at once. The receiver accepts
   a pending key already, so a board rebooted mid-way loses nothing (docs/uplink.md).
3. Board: write ``config.json.new``, ``policy.json.new``, ``identity.json.new``, then rename each
   over its file, identity last. Leftover ``.new`` files from an interrupted attempt are removed
   first (rolled back); the files are then rewritten from the registry (finished).
4. Verify: the board seals a self-test frame (``sensor.selftest``) with its counter and sealer;
   the host opens it with ``frame.parse_and_open`` and the pending key.
5. Registry, one transaction: the pending generation becomes active (with --force or on a
   re-provisioning the old generations are revoked; on a rotation the old one is retired and
   stays valid for a grace period). Then the notice is written and the board restarted.

A run that stops anywhere leaves the registry row pending; the next run finds it by the board's
id hash and finishes it with the same secrets, so board and registry always end up agreeing.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import frame as framemod
from . import keys as keymod
from . import policy as policymod
from .device import Device, connect
from .errors import DeviceError, UserError
from .registry import DeviceRow, Registry, board_hash, device_name

IDENTITY = "/identity.json"
CONFIG = "/config.json"
POLICY = "/policy.json"
PROVISIONED_FILES = (CONFIG, POLICY, IDENTITY)  # written in this order: identity last
DEFAULT_GRACE_S = 7 * 86400
CONFIG_MAX_BYTES = 64 * 1024  # config.json on a board with a few hundred KB of flash
_FRAME_RE = re.compile(r"selftest frame=([0-9a-f]+)")

Stage = Callable[[str], None]


@dataclass
class ProvisionResult:
    port: str
    device: str
    number: int
    site: str
    board: str
    kid: str  # public: it travels in every frame
    generation: int
    policy_hash: str | None
    verified_piv: int
    frame_bytes: int
    recovered: str | None  # "finished" an interrupted run, "rolled back" leftovers, or None
    forced: bool
    notice: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    place: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Policy:
    obj: dict[str, Any] | None
    data: bytes | None
    hash4: bytes


def load_policy(path: Path | None) -> _Policy:
    """The policy to provision: the file given, else the shipped default. Written to the board
    in canonical form, so the hash of its bytes is its canonical hash."""
    p = path or policymod.DEFAULT
    if path is None and not p.is_file():
        return _Policy(None, None, bytes(4))
    obj = policymod.load_policy(p)
    data = policymod.canonical(obj)
    return _Policy(obj, data, policymod.policy_hash(obj)[:4])


def load_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from .safeload import load_json

    obj = load_json(path, "config", limit=CONFIG_MAX_BYTES)
    if not isinstance(obj, dict):
        raise UserError(f"{path}: the config must be a JSON object (docs/device.md)")
    # The device would ignore a bad setting and run without it (no Wi-Fi, no uplink): refuse
    # it here, before the board is touched, with the device's own reasons.
    from .devconfig import require_valid

    require_valid(obj, path)
    return obj


def _dump(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


def identity_bytes(reg: Registry, kid: bytes) -> bytes:
    """/identity.json for one key generation (secret: never print or log)."""
    key, iv = keymod.derive(reg.master(kid), kid)
    return _dump(
        {"v": 1, "kid": kid.hex(), "key": key.hex(), "iv": iv.hex(), "seed": reg.seed(kid).hex()}
    )


# ---- the board side ------------------------------------------------------------------------


def _require_firmware(dev: Device) -> None:
    if not (dev.exists("/sensor/selftest.mpy") or dev.exists("/sensor/selftest.py")):
        raise UserError(
            f"the firmware is not deployed on {dev.port}: run `atsource deploy --port "
            f"{dev.port}` first"
        )


def board_kid(dev: Device) -> bytes | None:
    """The kid in the board's /identity.json (public), None if absent or damaged."""
    out = dev.exec(
        "import json\ntry:\n print(json.load(open('/identity.json'))['kid'])\n"
        "except Exception:\n print('-')"
    ).strip()
    try:
        kid = bytes.fromhex(out)
    except ValueError:
        return None
    return kid if len(kid) == keymod.KID_LEN else None


def _leftovers(dev: Device) -> list[str]:
    return [p + ".new" for p in PROVISIONED_FILES if dev.exists(p + ".new")]


def write_files(dev: Device, files: dict[str, bytes], stage: Stage) -> None:
    """Every file to ``X.new`` first, then the renames, in the order given (identity last)."""
    for path, data in files.items():
        stage(f"writing {path.lstrip('/')}")
        dev.write_file(path + ".new", data)
    for path in files:
        stage(f"committing {path.lstrip('/')}")
        dev.rename(path + ".new", path)


def verify(
    dev: Device, kid: bytes, key: bytes, iv: bytes, hash4: bytes
) -> tuple[framemod.Opened, int]:
    """Ask the board to seal a self-test frame and open it on the host with the given key."""
    out = dev.exec("import sensor.selftest\nsensor.selftest.run()", timeout=60)
    m = _FRAME_RE.search(out)
    if not m:
        raise DeviceError(f"{dev.port}: the board sealed no self-test frame")
    data = bytes.fromhex(m.group(1))

    def lookup(k: bytes) -> framemod.KeyEntry | None:
        return framemod.KeyEntry(key, iv) if k == kid else None

    try:
        opened = framemod.parse_and_open(data, lookup)
    except framemod.FrameRejected as e:
        raise DeviceError(
            f"{dev.port}: the board's self-test frame does not open with the registry's key "
            f"({e.reason})"
        ) from None
    from .record import KEY, STREAM_ID

    if opened.record.get(KEY["stream"]) != STREAM_ID["selftest"]:
        raise DeviceError(f"{dev.port}: the self-test frame is not a self-test record")
    if opened.record.get(KEY["policy_hash"]) != hash4:
        raise DeviceError(f"{dev.port}: the board reports a different policy hash than written")
    return opened, len(data)


# ---- provisioning --------------------------------------------------------------------------


def provision(
    port: str,
    site: str,
    *,
    registry: Registry,
    policy: Path | None = None,
    config: Path | None = None,
    force: bool = False,
    notice_dir: Path | None = None,
    stage: Stage | None = None,
    reset: bool = True,
    place: str | None = None,
    location: tuple[float, float] | None = None,
    lang: str = "en",
    store: str | Path | None = None,
) -> ProvisionResult:
    """Provision the board on ``port`` (see the module docstring). ``place`` (a name people
    read, "Plaza South, by the fountain") and ``location`` (lat, lon; published only coarsened
    to the policy's grid) go to the public register's log, never to the board. ``store``: a
    readings store whose device numbers a new device must not get (see ``seen_numbers``)."""
    say: Stage = stage or (lambda _s: None)
    if not site or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", site):
        raise UserError(f"bad site name '{site}': letters, digits, '.', '_' and '-' (max 64)")
    place = check_place(place)
    pol = load_policy(policy)
    base_config = load_config(config)
    seen = seen_numbers(store)
    t0 = time.monotonic()
    say("connecting")
    with connect(port) as dev:
        result = _provision(dev, site, registry, pol, base_config, force, say, seen)
        result.place = place or ""
        try:
            _record(registry, result, pol, place, location)
        except (UserError, OSError) as e:  # the board is provisioned: say so, loudly
            result.warnings.append(f"the public register's event was not recorded: {e}")
        if notice_dir is not None:
            _notice(result, pol, notice_dir, lang)
        if reset:
            say("restarting")
            dev.soft_reboot()
    result.seconds = round(time.monotonic() - t0, 3)
    say("done")
    return result


def _provision(
    dev: Device,
    site: str,
    reg: Registry,
    pol: _Policy,
    base_config: dict[str, Any],
    force: bool,
    say: Stage,
    seen: frozenset[int] = frozenset(),
) -> ProvisionResult:
    say("checking the board")
    board = dev.detect_board()
    _require_firmware(dev)
    bhash = board_hash(dev.unique_id())
    on_board = board_kid(dev)
    leftovers = _leftovers(dev)
    row = reg.device_by_board(bhash)
    policy_hex = pol.hash4.hex() if pol.data is not None else None
    recovered: str | None = None
    revoke_old = force

    if row is None:
        if on_board is not None and not force:
            raise UserError(
                f"{dev.port}: the board holds an identity (kid {on_board.hex()}) this registry "
                "does not know; use --force to provision it as a new device"
            )
        row, kid = reg.begin_device(bhash, board.name, site, policy_hex, seen=seen)
    else:
        pending = reg.pending_kid(row.number)
        active = reg.active_kid(row.number)
        if pending is not None:
            kid = reg.begin_generation(row.number, site, policy_hex)  # reuses the pending one
            recovered = "finished"
        elif not force:
            if on_board is not None and on_board == active:
                raise UserError(
                    f"{dev.port}: already provisioned as {row.name} at site {row.site} "
                    f"(kid {on_board.hex()}); use --force to re-provision"
                )
            what = "has no identity" if on_board is None else "holds another identity"
            raise UserError(
                f"{dev.port}: the registry knows this board as {row.name} but the board {what}; "
                "use --force to re-provision it"
            )
        else:
            kid = reg.begin_generation(row.number, site, policy_hex)
    if leftovers and recovered is None:
        recovered = "rolled back"
    for p in leftovers:
        dev.remove(p)

    number, generation = keymod.split_kid(kid)
    cfg = dict(base_config)
    cfg.update({"v": 1, "site": site, "device": number})
    files: dict[str, bytes] = {CONFIG: _dump(cfg)}
    if pol.data is not None:
        files[POLICY] = pol.data
    files[IDENTITY] = identity_bytes(reg, kid)
    _check_space(dev, files)
    write_files(dev, files, say)
    del files  # drop the identity bytes as soon as they are on the board

    say("verifying a sealed frame")
    key, iv = keymod.derive(reg.master(kid), kid)
    opened, frame_len = verify(dev, kid, key, iv, pol.hash4)
    reg.activate(kid, old="revoke" if revoke_old else "retire", verified_piv=opened.piv)
    warnings = [] if pol.data is not None else ["no policy: the board will release nothing"]
    return ProvisionResult(
        port=dev.port,
        device=device_name(number),
        number=number,
        site=site,
        board=board.name,
        kid=kid.hex(),
        generation=generation,
        policy_hash=policy_hex,
        verified_piv=opened.piv,
        frame_bytes=frame_len,
        recovered=recovered,
        forced=force,
        warnings=warnings,
    )


def seen_numbers(store: str | Path | None) -> frozenset[int]:
    """Device numbers a readings store holds frames of, when that store exists here (a
    SQLite file; a postgresql:// URL is always asked): a new device is numbered above them,
    so its frames can never meet another device's replay window (a registry restored from an
    old backup would otherwise issue them again)."""
    from .store import is_postgres_url, open_store

    if store is None or (not is_postgres_url(str(store)) and not Path(store).is_file()):
        return frozenset()
    with open_store(store) as s:
        return frozenset(s.device_numbers())


def _check_space(dev: Device, files: dict[str, bytes]) -> None:
    need = sum(len(d) for d in files.values()) + 3 * 4096
    if dev.free_bytes() < need:
        raise DeviceError(f"no space on the device on {dev.port} for the provisioned files")


def check_place(place: str | None) -> str | None:
    if place is None:
        return None
    place = " ".join(place.split())
    if not place or len(place) > 120:
        raise UserError("bad --place: a name people read, 1 to 120 characters")
    return place


def _record(
    reg: Registry,
    result: ProvisionResult,
    pol: _Policy,
    place: str | None,
    location: tuple[float, float] | None,
) -> None:
    """The public register's events for this provisioning (eventlog.py)."""
    from .eventlog import EventLog
    from .register import coarsen

    log = EventLog.for_registry(reg.path)
    previous = log.last(result.device, "provisioned", "policy_changed")
    full = policymod.policy_hash(pol.obj).hex() if pol.obj is not None else ""
    data: dict[str, Any] = {
        "site": result.site,
        "board": result.board,
        "kid": result.kid,
        "generation": result.generation,
        "policy_hash": full,
        "policy": pol.obj,
        "forced": result.forced,
    }
    prev_data = (previous or {}).get("data") or {}
    if place or prev_data.get("place"):
        data["place"] = place or prev_data["place"]
    if location is not None:
        grid = int(((pol.obj or {}).get("location") or {}).get("coarsen_m", 1000))
        data["location"] = coarsen(location[0], location[1], grid)
    elif prev_data.get("location"):
        data["location"] = prev_data["location"]
    log.append("provisioned", result.device, data)
    if previous is not None and prev_data.get("policy_hash") != full:
        log.append(
            "policy_changed",
            result.device,
            {
                "old_policy_hash": prev_data.get("policy_hash", ""),
                "policy_hash": full,
                "policy": pol.obj,
            },
        )


def _notice(result: ProvisionResult, pol: _Policy, notice_dir: Path, lang: str = "en") -> None:
    try:
        from . import notice
        from .register import base_url, sensor_url
    except ImportError:
        return
    if pol.obj is None:
        return
    try:
        out = notice.render(
            pol.obj,
            notice_dir / result.device,
            site=result.place or result.site,
            device=result.device,
            url=sensor_url(base_url(), result.device),
            lang=lang,
            installed=time.strftime("%Y-%m-%d", time.gmtime()),
        )
    except Exception as e:  # noqa: BLE001 - a notice failure must not undo a good provisioning
        result.warnings.append(f"notice not written: {e}")
        return
    result.notice = [str(p) for p in out]


# ---- rotation --------------------------------------------------------------------------------


@dataclass
class RotateResult:
    port: str
    device: str
    old_kid: str | None
    kid: str
    generation: int
    old_valid_until: float | None
    verified_piv: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def rotate(
    port: str,
    number: int,
    *,
    registry: Registry,
    grace_s: float = DEFAULT_GRACE_S,
    stage: Stage | None = None,
) -> RotateResult:
    """A new key generation for a device, provisioned to its board over ``port``; the old
    generation stays valid for ``grace_s`` seconds (frames still in the board's outbox)."""
    say: Stage = stage or (lambda _s: None)
    row = registry.device(number)
    if row is None:
        raise UserError(f"no device {device_name(number)} in the registry")
    if row.state != "active":
        raise UserError(f"{row.name} is {row.state}: provision it first")
    say("connecting")
    with connect(port) as dev:
        _check_same_board(dev, row)
        old = registry.active_kid(number)
        kid = registry.begin_generation(number)
        for p in _leftovers(dev):
            dev.remove(p)
        write_files(dev, {IDENTITY: identity_bytes(registry, kid)}, say)
        say("verifying a sealed frame")
        key, iv = keymod.derive(registry.master(kid), kid)
        pol = dev.exists(POLICY)
        hash4 = _board_policy_hash4(dev) if pol else bytes(4)
        opened, _ = verify(dev, kid, key, iv, hash4)
        registry.activate(kid, old="retire", grace_s=grace_s, verified_piv=opened.piv)
        say("restarting")
        dev.soft_reboot()
    old_row = next((k for k in registry.keys(number) if k.kid == old), None)
    from datetime import UTC, datetime

    from .eventlog import EventLog

    until = old_row.valid_until if old_row else None
    EventLog.for_registry(registry.path).append(
        "key_rotated",
        row.name,
        {
            "kid": kid.hex(),
            "generation": kid[4],
            "old_kid": old.hex() if old else None,
            "old_valid_until": datetime.fromtimestamp(until, UTC).isoformat(timespec="seconds")
            if until
            else None,
        },
    )
    return RotateResult(
        port=port,
        device=row.name,
        old_kid=old.hex() if old else None,
        kid=kid.hex(),
        generation=kid[4],
        old_valid_until=old_row.valid_until if old_row else None,
        verified_piv=opened.piv,
    )


def _board_policy_hash4(dev: Device) -> bytes:
    h = dev.sha256([POLICY])[POLICY]
    return bytes.fromhex(h)[:4] if h else bytes(4)


def _check_same_board(dev: Device, row: DeviceRow) -> None:
    if board_hash(dev.unique_id()) != row.board_hash:
        raise UserError(f"the board on {dev.port} is not {row.name}: wrong board")


# ---- batch -----------------------------------------------------------------------------------


@dataclass
class BatchItem:
    port: str
    result: ProvisionResult | None = None
    error: str | None = None
    exit_code: int = 0


def batch_ports(extra: Sequence[str]) -> list[str]:
    """Every board attached (USB ids of a board definition, MicroPython mode) or emulated here,
    plus ``extra``."""
    from .ports import AUTO, all_ports

    ports = [p.port for p in all_ports() if p.kind != "bootsel"]
    for p in extra:
        if p not in ports and p != AUTO:
            ports.append(p)
    return ports


def provision_batch(
    ports: Sequence[str],
    site: str,
    *,
    registry: Registry,
    policy: Path | None = None,
    config: Path | None = None,
    force: bool = False,
    notice_dir: Path | None = None,
    on_stage: Callable[[str, str], None] | None = None,
    workers: int | None = None,
    place: str | None = None,
    lang: str = "en",
    store: str | Path | None = None,
) -> list[BatchItem]:
    """Provision several boards in parallel (one thread each: the work is waiting on ports).
    One board failing does not stop the others; each item says what happened."""
    if not ports:
        raise UserError("no boards found: plug one in, or name ports with --port")
    load_config(config)  # a bad config is refused once, before any board is touched

    def one(port: str) -> BatchItem:
        def stage(text: str) -> None:
            if on_stage:
                on_stage(port, text)

        try:
            res = provision(
                port,
                site,
                registry=registry,
                policy=policy,
                config=config,
                force=force,
                notice_dir=notice_dir,
                stage=stage,
                place=place,
                lang=lang,
                store=store,
            )
            return BatchItem(port, result=res)
        except UserError as e:
            stage(f"failed: {e}")
            return BatchItem(port, error=str(e), exit_code=e.exit_code)

    n = workers or min(len(ports), max(4, (os.cpu_count() or 2) * 4))
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="provision") as pool:
        return list(pool.map(one, ports))
