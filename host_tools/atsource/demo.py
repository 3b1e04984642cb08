"""`atsource demo`: the main job end to end on an emulated fleet, with no hardware or network.

1. Boards of both kinds start empty behind real serial ports (ptys); the real tools deploy the
   firmware and provision each one (keys, policy, config) into a fresh registry.
2. Each board then lives a simulated day of its scenario, in parallel processes; every frame
   it sends over its host link is kept (or published to a real broker with ``--mqtt``).
3. The receiver verifies, decrypts and stores every frame in SQLite.
4. The report: plots against ground truth, the privacy audit of everything the boards emitted,
   per-device frame counts, and each device's citizen notice, in one HTML page.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import demo_report, paths
from .audit import Auditor, flash_blobs
from .boards import load_board
from .emulator.api import EMULATED_CONFIG, make_world, serve_board
from .emulator.engine import EmulatedBoard
from .errors import UserError

DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class Member:
    board: str
    scenario: str
    site: str
    seed: int | None = None


# Both kinds of board on both busy and quiet places; the plaza crowds (over 2,000 phones a
# day each) put the privacy audit to work on each port.
FLEET = (
    Member("esp32-devkitc", "plaza", "plaza-north"),
    Member("pico-w", "plaza", "plaza-south", seed=11),
    Member("pico-w", "residential", "elm-street"),
    Member("esp32-devkitc", "residential", "oak-street", seed=23),
)


@dataclass
class DayResult:
    member: Member
    device: str
    frames: list[bytes]
    lines: list[tuple[int, str]]
    heap_peak: int
    resets: list[str]
    refused: int
    wall_s: float


@dataclass
class DeviceReport:
    member: Member
    device: str
    kid: str
    sent: int
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    pivs: list[int] = field(default_factory=list)
    records: list[dict[int, Any]] = field(default_factory=list)
    notice: list[str] = field(default_factory=list)
    world: Any = None  # the scenario's world, built once here for ground truth and the audit


def _live_day(member: Member, flash: str, device: str) -> DayResult:
    """One board's simulated day (runs in a worker process)."""
    board = load_board(member.board)
    world = make_world(board, member.scenario, member.seed, None)
    frames: list[bytes] = []

    def on_frame(frame: bytes) -> bool:
        frames.append(frame)
        return True

    emu = EmulatedBoard(
        board,
        Path(flash),
        world=world,
        start_us=world.start_us,
        seed=1,
        entry="sensor.app",
        on_frame=on_frame,
        instance=device,
    )
    t0 = time.perf_counter()
    stats = emu.run(duration_us=DAY_US)
    emu.close()
    return DayResult(
        member,
        device,
        frames,
        list(emu.lines),
        stats.heap_peak,
        [r.kind for r in stats.resets],
        stats.frames_refused,
        time.perf_counter() - t0,
    )


def run_demo(
    out: Path,
    *,
    mqtt: str | None = None,
    say: Callable[[str], None] = print,
    fleet: tuple[Member, ...] = FLEET,
) -> dict[str, Any]:
    from .deploy import deploy
    from .provision import provision
    from .receiver import Receiver
    from .registry import Registry
    from .store import SQLiteStore

    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("registry.db", "registry.key", "readings.db"):
        for p in out.glob(old + "*"):
            p.unlink()
    os.environ.setdefault("ATSOURCE_REGISTRY_KEY_FILE", str(out / "registry.key"))
    registry = Registry.open(out / "registry.db")
    config = out / "device-config.json"
    config.write_text(json.dumps(EMULATED_CONFIG))

    # 1. Deploy and provision each board through its serial port, with the real tools.
    flashes: dict[str, Path] = {}
    devices: dict[str, DeviceReport] = {}
    for i, m in enumerate(fleet):
        instance = f"demo-{i + 1}"
        flash = out / "flash" / instance
        if flash.exists():
            for p in sorted(flash.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
        flash.mkdir(parents=True)
        with serve_board(m.board, flash, instance=instance, seed=1) as sb:
            d = deploy(sb.port, board=m.board)
            p = provision(
                sb.port,
                m.site,
                registry=registry,
                policy=paths.ROOT / "policies" / "default.json",
                config=config,
                notice_dir=out / "notices",
            )
        say(
            f"{m.board:14} {m.site:12} deployed {len(d.copied)} files, "
            f"provisioned {p.device} (kid {p.kid})"
        )
        flashes[p.device] = flash
        world = make_world(load_board(m.board), m.scenario, m.seed, None)
        devices[p.device] = DeviceReport(m, p.device, p.kid, 0, notice=list(p.notice), world=world)

    # 2. A simulated day on every board, two at a time (the machine's cores).
    say(f"running a simulated day on {len(fleet)} boards ...")
    results: list[DayResult] = []
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        futs = [
            pool.submit(_live_day, devices[dev].member, str(flashes[dev]), dev) for dev in devices
        ]
        for f in futs:
            r = f.result()
            results.append(r)
            say(
                f"  {r.device}: {len(r.frames)} frames, peak heap {r.heap_peak} B, {r.wall_s:.0f} s"
            )

    # 3. Receive every frame: straight from the boards, or through a real MQTT broker.
    store = SQLiteStore(out / "readings.db")
    rx = Receiver(store, registry.key_entry)
    frames = [(r.device, f) for r in results for f in r.frames]
    if mqtt:
        outcomes = _via_mqtt(mqtt, frames, rx, {d.kid: d.device for d in devices.values()})
    else:
        outcomes = [(dev, rx.submit(f, dev)) for dev, f in frames]
    for r in results:
        devices[r.device].sent = len(r.frames)
    for dev, res in outcomes:
        rep = devices[dev]
        if res.accepted and res.reading is not None:
            rep.accepted += 1
            rep.pivs.append(res.reading.piv)
            rep.records.append(res.reading.record)
        else:
            rep.rejected[res.reason or "?"] = rep.rejected.get(res.reason or "?", 0) + 1

    # 4. The privacy audit: console, flash and every record's plaintext, against the crowds.
    audit = _audit(results, flashes, devices)
    report = demo_report.write(out, results, devices, audit, mqtt)
    summary = {
        "report": str(report),
        "seconds": round(time.perf_counter() - t_start, 1),
        "devices": [
            {
                "device": d.device,
                "kid": d.kid,
                "seed": d.member.seed,
                "board": d.member.board,
                "scenario": d.member.scenario,
                "site": d.member.site,
                "frames_sent": d.sent,
                "frames_stored": d.accepted,
                "rejected": d.rejected,
                "missing": d.sent - d.accepted,
            }
            for d in devices.values()
        ],
        "audit": {"passed": audit.passed, "summary": audit.summary()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _via_mqtt(
    url: str, frames: list[tuple[str, bytes]], rx: Any, kids: dict[str, str]
) -> list[tuple[str, Any]]:
    """Publish every frame to a real broker; the receiver takes them back by subscription."""
    import paho.mqtt.client as paho

    from .receiver import open_source

    got: list[tuple[str, Any]] = []
    src = open_source(url)
    summary: list[Any] = []

    def consume() -> None:
        def on_result(res: Any) -> None:
            got.append((kids.get(res.kid.hex() if res.kid else "", "?"), res))

        summary.append(src.run(rx, count=len(frames), timeout=120, on_result=on_result))

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    # Publish once the receiver is subscribed (QoS 1, clean session): wait for that, not for
    # a fixed pause a busy machine may overrun.
    while not src.ready.wait(0.2) and t.is_alive():
        pass
    host_port = url.split("://", 1)[1].split("/", 1)
    host, _, port = host_port[0].partition(":")
    topic = host_port[1] if len(host_port) > 1 else "atsource/up"
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    pub.connect(host, int(port or 1883))
    pub.loop_start()
    for _, f in frames:
        pub.publish(topic, f, qos=1).wait_for_publish(10)
    pub.loop_stop()
    pub.disconnect()
    t.join(150)
    if len(got) < len(frames):
        raise UserError(f"only {len(got)} of {len(frames)} frames came back from {url}")
    return got


def _audit(results: list[DayResult], flashes: dict[str, Path], devices: dict[str, DeviceReport]):
    import cbor2

    addresses: set[bytes] = set()
    names: set[str] = set()
    blobs: list[tuple[str, bytes]] = []
    for r in results:
        ids = devices[r.device].world.names_and_addresses()
        addresses.update(ids["addresses"])
        names.update(ids["names"])
        blobs.append((f"{r.device}:console", "\n".join(t for _, t in r.lines).encode()))
        blobs += [(f"{r.device}:{n}", b) for n, b in flash_blobs(flashes[r.device])]
        blobs.append(
            (
                f"{r.device}:records",
                b"".join(cbor2.dumps(rec) for rec in devices[r.device].records),
            )
        )
    return Auditor(addresses, names).scan(blobs)
