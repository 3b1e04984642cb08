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
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import demo_report, paths
from .audit import Auditor, flash_blobs
from .boards import load_board
from .emulator.api import EMULATED_CONFIG, make_world, serve_board
from .emulator.engine import EmulatedBoard
from .errors import DeviceError, UserError

# The city's policy allows every stream the firmware has: climate, people, noise level and air
# quality. Each board runs the five it has by default and one of the two new senses (off by
# default): particulates at the plazas (buses), the noise level in the residential streets
# (traffic); each site's policy names only what its board runs (_site_policy). All seven and a
# network uplink do not fit the 64 KB RAM budget yet: 66.7 KB measured (docs/sensors.md); the
# noise stream alone takes 7.5 KB, air 4.9 KB.
DEMO_POLICY = paths.ROOT / "policies" / "street-full.json"
SENSES = {"plaza": {"air": True}, "residential": {"noise": True}}


def _site_policy(out: Path, scenario: str) -> Path:
    """The city's policy with only the new sense this site's board runs: the notice then says
    what this sensor measures (loudness only where a microphone is), and the gate refuses the
    other. Written into the demo's folder."""
    pol = json.loads(DEMO_POLICY.read_text())
    on = SENSES.get(scenario, {})
    for name in ("noise", "air"):
        if not on.get(name):
            pol["streams"].pop(name, None)
    p = out / f"policy-{scenario}.json"
    p.write_text(json.dumps(pol, indent=1))
    return p


def _device_config(scenario: str, uplink: dict[str, Any] | None) -> dict[str, Any]:
    cfg: dict[str, Any] = {**EMULATED_CONFIG, "sensors": SENSES.get(scenario, {})}
    if uplink is not None:
        cfg["uplink"] = uplink
    return cfg


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


@dataclass(frozen=True)
class Broker:
    """Where the boards' own MQTT clients publish (``atsource demo --mqtt``)."""

    scheme: str  # mqtt or mqtts
    host: str
    port: int
    topic: str
    ca: Path | None

    @staticmethod
    def parse(url: str, ca: Path | None) -> Broker:
        import ipaddress
        import re
        from urllib.parse import urlsplit

        m = re.match(r"^(mqtts?)://([^/]+)(?:/(.*))?$", url)
        if not m:
            raise UserError(f"--mqtt {url}: use mqtt://HOST:PORT/TOPIC or mqtts://...")
        try:
            parts = urlsplit("//" + m[2])
            host, port = parts.hostname or "", parts.port
        except ValueError:
            raise UserError(f"--mqtt {url}: bad port") from None
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise UserError(
                f"--mqtt {url}: emulated boards reach only this machine: give a loopback broker"
            )
        topic = (m[3] or "atsource/up").rstrip("/")
        if not topic or any(c in topic for c in "#+"):
            raise UserError(f"--mqtt {url}: the topic must be a plain prefix (no # or +)")
        port = port or (8883 if m[1] == "mqtts" else 1883)
        return Broker(m[1], host, port, topic, ca)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/{self.topic}"

    def uplink(self, site: str) -> dict[str, Any]:
        up: dict[str, Any] = {
            "transport": "mqtt",
            "url": f"{self.scheme}://{self.host}:{self.port}",
            "topic": f"{self.topic}/{site}",
        }
        if self.ca is not None:
            up["ca"] = self.ca.read_text()
        return up


def _live_day(member: Member, flash: str, device: str, progress: Any = None) -> DayResult:
    """One board's simulated day (runs in a worker process). ``progress`` (a queue) gets
    (device, simulated hours) each simulated hour, for the parent to show."""
    board = load_board(member.board)
    world = make_world(board, member.scenario, member.seed, None)
    frames: list[bytes] = []
    hours = [0]

    def on_frame(frame: bytes) -> bool:
        frames.append(frame)
        return True

    def on_line(t_us: int, _line: str) -> None:
        h = (t_us - world.start_us) // 3_600_000_000
        if progress is not None and h > hours[0]:
            hours[0] = h
            progress.put((device, h))

    emu = EmulatedBoard(
        board,
        Path(flash),
        world=world,
        start_us=world.start_us,
        seed=1,
        entry="sensor.app",
        on_frame=on_frame,
        on_line=on_line,
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
    mqtt_ca: Path | None = None,
    say: Callable[[str], None] = print,
    fleet: tuple[Member, ...] = FLEET,
) -> dict[str, Any]:
    from .deploy import deploy
    from .provision import provision
    from .receiver import Receiver
    from .registry import KEY_ENV, KEY_FILE_ENV, Registry
    from .store import SQLiteStore

    t_start = time.perf_counter()
    broker = Broker.parse(mqtt, mqtt_ca) if mqtt else None
    out.mkdir(parents=True, exist_ok=True)
    for old in ("registry.db", "readings.db"):
        for p in out.glob(old + "*"):
            p.unlink()
    # The demo's registry is its own, keyed by registry.db.key beside it, whatever key the
    # user's environment names (and the environment is left as it was: the demo also runs
    # inside other programs, the tests among them).
    saved = {k: os.environ.pop(k) for k in (KEY_ENV, KEY_FILE_ENV) if k in os.environ}
    try:
        registry = Registry.open(out / "registry.db")
    finally:
        os.environ.update(saved)

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
        # With a broker, the board's own MQTT client publishes to it (under its site's topic).
        config = out / f"device-config-{instance}.json"
        uplink = broker.uplink(m.site) if broker is not None else None
        config.write_text(json.dumps(_device_config(m.scenario, uplink)))
        with serve_board(m.board, flash, instance=instance, seed=1) as sb:
            d = deploy(sb.port, board=m.board)
            p = provision(
                sb.port,
                m.site,
                registry=registry,
                policy=_site_policy(out, m.scenario),
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

    # The public register of the fleet, from the events provisioning appended (docs/register.md).
    from .eventlog import EventLog
    from .register import base_url
    from .register import build as build_register

    log = EventLog.for_registry(registry.path)
    build_register(log.events(), log.key(), out / "register", base_url())
    say(f"public register of {len(devices)} sensors: {out / 'register' / 'index.html'}")

    # 2. A simulated day on every board, two at a time (the machine's cores); progress every
    # few simulated hours; a board that fails is named in a partial report, not lost.
    listener = _Listener(broker, out / "readings.db", registry) if broker is not None else None
    if listener is not None:
        listener.start()
        say(f"receiving from {broker.url if broker else ''} (the boards' own MQTT clients)")
    say(f"running a simulated day on {len(fleet)} boards, two at a time ...")
    results: list[DayResult] = []
    failures: dict[str, str] = {}
    with multiprocessing.Manager() as manager:
        progress = manager.Queue()
        with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
            futs = {
                pool.submit(_live_day, devices[dev].member, str(flashes[dev]), dev, progress): dev
                for dev in devices
            }
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                while not progress.empty():
                    dev, h = progress.get()
                    if h % 6 == 0 and h < 24:
                        say(f"  {dev}: {h} h of 24 simulated")
                for f in done:
                    dev = futs[f]
                    try:
                        r = f.result()
                    except Exception as e:  # noqa: BLE001 - reported, the others go on
                        failures[dev] = (
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        )
                        say(f"  {dev}: FAILED: {failures[dev]}")
                        continue
                    results.append(r)
                    say(
                        f"  {r.device}: day done, {len(r.frames)} frames, peak heap "
                        f"{r.heap_peak} B, {r.wall_s:.0f} s"
                    )
    results.sort(key=lambda r: r.device)

    # 3. Receive every frame: straight from the boards' host links, or (--mqtt) what the
    # boards published to the broker, which the receiver has been taking in all along.
    kids = {d.kid: d.device for d in devices.values()}
    if listener is not None:
        got = listener.finish()
        outcomes = [(kids.get(res.kid.hex() if res.kid else "", "?"), res) for res in got]
        for r in results:
            # Sent: what reached the broker, and what still waits in the board's outbox.
            from .pytest_plugin import parse_outbox

            log = flashes[r.device] / "outbox.log"
            waiting = parse_outbox(log.read_bytes()) if log.exists() else []
            reached = sum(1 for dev, _ in outcomes if dev == r.device)
            devices[r.device].sent = reached + len(waiting)
    else:
        store = SQLiteStore(out / "readings.db")
        rx = Receiver(store, registry.key_entry)
        frames = [(r.device, f) for r in results for f in r.frames]
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
    phones = sum(
        1 for d in devices.values() for p in getattr(d.world, "people", []) if p.phone is not None
    )
    report = demo_report.write(out, results, devices, audit, mqtt, failures, phones)
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
        "register": str(out / "register" / "index.html"),
        "failed": failures,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if failures:
        first = next(iter(failures.items()))
        raise DeviceError(
            f"{len(failures)} board(s) failed ({first[0]}: {first[1]}); partial report: {report}"
        )
    return summary


class _Listener:
    """The receiver of ``demo --mqtt``: subscribed before the boards start, it verifies and
    stores what they publish (its own thread, its own store connection)."""

    END = "_demo_end"

    def __init__(self, broker: Broker, db: Path, registry: Any) -> None:
        from .receiver import MqttSource

        self.broker, self.db, self.registry = broker, db, registry
        self.src = MqttSource(
            broker.host,
            broker.port,
            f"{broker.topic}/#",
            tls=broker.scheme == "mqtts",
            ca=str(broker.ca) if broker.ca else None,
            client_id="atsource-demo-receiver",
        )
        self.results: list[Any] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, daemon=True, name="demo-receiver")

    def _run(self) -> None:
        from .receiver import Receiver, Result
        from .store import SQLiteStore

        listener = self

        class Rx(Receiver):
            def submit(self, frame: Any, source: str = "") -> Any:
                if source.endswith("/" + listener.END):
                    listener.ended.set()
                    return Result("end-marker")
                res = super().submit(frame, source)
                listener.results.append(res)
                return res

        try:
            store = SQLiteStore(self.db)
            self.src.run(Rx(store, self.registry.key_entry), on_result=lambda _r: None)
        except BaseException as e:  # noqa: BLE001 - reported by finish()
            self.error = e
            self.ended.set()

    def start(self) -> None:
        self._t.start()
        # Subscribed before any board publishes: waits on the broker's answer.
        while not self.src.ready.wait(0.5):
            if self.error is not None or not self._t.is_alive():
                raise UserError(f"cannot receive from {self.broker.url}: {self.error}")

    def finish(self) -> list[Any]:
        """Everything the boards published: the broker delivers it before an end marker sent
        now, after the last board stopped (one broker, one subscriber session, in order)."""
        import paho.mqtt.client as paho

        pub = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if self.broker.scheme == "mqtts":
            pub.tls_set(ca_certs=str(self.broker.ca) if self.broker.ca else None)
        pub.connect(self.broker.host, self.broker.port)
        pub.loop_start()
        pub.publish(f"{self.broker.topic}/{self.END}", b"end", qos=1).wait_for_publish()
        pub.loop_stop()
        pub.disconnect()
        # Progress-based: the marker arrives after every frame; the cap only stops a hang.
        if not self.ended.wait(600):
            raise UserError(f"the receiver got no end marker back from {self.broker.url}")
        self.src.stop()
        self._t.join(timeout=60)
        if self.error is not None:
            raise UserError(f"receiving from {self.broker.url} failed: {self.error}")
        return list(self.results)


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
    # A PMS5003 frame starts 42 4D 00 1C (start bytes, length 28): the driver keeps frames in
    # one buffer and releases only window means; none may show up anywhere.
    return Auditor(addresses, names, raw={"PMS5003 frame": b"BM\x00\x1c"}).scan(blobs)
