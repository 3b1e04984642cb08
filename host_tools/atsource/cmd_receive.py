"""`atsource receive`: verify, decrypt and store uplinks; report stats; export readings.
`atsource store prune`: delete readings past their policy's retention."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from .errors import UserError
from .record import FIELD_NAMES, describe

if TYPE_CHECKING:  # the store (cbor2, cryptography) is imported when a command runs
    from .store import Reading, SQLStore, StoreStats

# Exit code when --count N frames were not accepted before the source ended or --timeout.
EXIT_SHORT = 4


log = logging.getLogger("atsource.receiver")


def db_option(f: Any) -> Any:
    return click.option(
        "--db",
        metavar="PATH|URL",
        help="Store: a SQLite file or postgresql://user@host/db (default: $ATSOURCE_DB, "
        "else ~/.local/share/atsource/readings.db).",
    )(f)


def policy_option(f: Any) -> Any:
    return click.option(
        "--policy",
        "policy_files",
        multiple=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="A policy the fleet runs (repeatable), for its retention; the shipped policies/ "
        "are always known.",
    )(f)


def register_policies(store: SQLStore, files: Iterable[Path] = ()) -> int:
    """Record the receiver_days of the shipped policies and of ``files`` in the store (keyed
    by the 4-byte hash the frames carry); returns how many."""
    from . import policy as policymod

    paths = sorted(policymod.POLICIES.glob("*.json")) + list(files)
    n = 0
    for p in paths:
        obj = policymod.load_policy(p)  # a UserError names the file and the first fault
        store.set_policy(
            policymod.policy_hash(obj)[:4],
            int(obj["retention"]["receiver_days"]),
            str(obj.get("name", p.stem)),
        )
        n += 1
    return n


def parse_duration(text: str, what: str) -> float:
    """7d, 12h, 30m, 90s or plain seconds."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", text)
    if not m:
        raise UserError(f"bad {what} '{text}': e.g. 1h, 30m, 2d or 0")
    return float(m.group(1)) * {"d": 86400, "h": 3600, "m": 60, "s": 1, "": 1}[m.group(2)]


def default_client_id(subscription: str, store_name: str) -> str:
    """A stable MQTT client id for this host, subscription and store: a restarted receiver
    resumes its persistent session (the broker kept its frames). Receivers side by side on
    one host, subscription and store give their own --client-id."""
    h = hashlib.sha256(f"{socket.gethostname()}|{subscription}|{store_name}".encode()).hexdigest()
    return f"atsource-rx-{h[:12]}"


class Pruner:
    """Deletes readings past retention every ``every_s`` seconds, from its own thread and its
    own store connection (the receiving one is never shared between threads)."""

    def __init__(self, spec: str, every_s: float) -> None:
        self.spec, self.every_s = spec, every_s
        self._stop = threading.Event()
        self.runs = 0
        self.thread = threading.Thread(target=self._loop, name="atsource-prune", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        from .store import open_store

        while True:  # once at start, then every every_s until stopped
            try:
                with open_store(self.spec) as store:
                    res = store.prune()
                n = sum(res.deleted.values())
                if n:
                    click.echo(f"receive: pruned {n} reading(s) past retention", err=True)
            except UserError as e:  # a store hiccup must not kill the receiver: next run
                click.echo(f"receive: retention run failed: {e}", err=True)
            self.runs += 1
            if self._stop.wait(self.every_s):
                return

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        n = int(port)
    except ValueError:
        n = -1
    if not 0 <= n < 65536:
        raise UserError(f"bad --metrics-port '{text}': give PORT or HOST:PORT")
    return host or "127.0.0.1", n


EXPORT_META = ("id", "kid", "device", "generation", "piv", "received", "source")


def export_row(r: Reading) -> dict[str, Any]:
    """One reading as a flat dict: metadata, then the record's named, scaled fields."""
    from datetime import UTC, datetime

    row: dict[str, Any] = {
        "id": r.id,
        "kid": r.kid.hex(),
        "device": r.device,
        "generation": r.generation,
        "piv": r.piv,
        "received": datetime.fromtimestamp(r.received, UTC).isoformat(timespec="milliseconds"),
        "source": r.source,
    }
    row.update(describe(r.record))
    return row


def export_readings(readings: Iterable[Reading], fmt: str, out: IO[str]) -> int:
    """Write readings as CSV (fixed columns; unknown keys in `extra` as JSON) or as a JSON array.
    Returns the number written."""
    n = 0
    if fmt == "csv":
        cols = [*EXPORT_META, *FIELD_NAMES, "extra"]
        w = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in readings:
            row = export_row(r)
            extra = {k: row.pop(k) for k in list(row) if k not in cols}
            if isinstance(row.get("faults"), list):
                row["faults"] = "|".join(row["faults"])
            row["extra"] = json.dumps(extra, sort_keys=True) if extra else ""
            w.writerow(row)
            n += 1
        return n
    out.write("[")
    for r in readings:
        out.write(",\n " if n else "\n ")
        out.write(json.dumps(export_row(r)))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def stats_dict(s: StoreStats) -> dict[str, Any]:
    from .receiver import RECEIVER_REASONS

    rejected = {r: s.rejected.get(r, 0) for r in RECEIVER_REASONS}
    rejected.update({r: n for r, n in s.rejected.items() if r not in rejected})
    return {
        "accepted": s.accepted,
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "devices": {
            kid.hex(): {
                "accepted": d["accepted"],
                "bad_tags": d["bad_tags"],
                "highest_piv": d["highest"],
            }
            for kid, d in s.devices.items()
        },
    }


def _print_stats(d: dict[str, Any]) -> None:
    click.echo(f"{'accepted':<16}{d['accepted']:>10}")
    click.echo(f"{'rejected':<16}{d['rejected_total']:>10}")
    for reason, n in d["rejected"].items():
        click.echo(f"  {reason:<14}{n:>10}")
    if d["devices"]:
        click.echo(f"{'device kid':<16}{'accepted':>10}{'bad tags':>10}{'highest piv':>13}")
        for kid, v in d["devices"].items():
            click.echo(f"  {kid:<14}{v['accepted']:>10}{v['bad_tags']:>10}{v['highest_piv']:>13}")


def _line(res: Any) -> str:
    if res.accepted:
        rec = describe(res.reading.record)
        vals = " ".join(
            f"{k}={v}" for k, v in rec.items() if k not in ("window_start", "policy_hash")
        )
        return f"accepted {res.kid.hex()} piv {res.piv} {rec.get('window_start', '')} {vals}"
    kid = f" {res.kid.hex()}" if res.kid else ""
    return f"rejected {res.reason}{kid}"


@click.command()
@click.option(
    "--from",
    "source",
    metavar="SOURCE",
    help="mqtt://[user[:pass]@]host[:port]/topic, mqtts://..., http://HOST:PORT/PATH (listen for "
    "devices' HTTP POSTs), file:PATH, a path, or - (stdin).",
)
@db_option
@click.option(
    "--registry",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Device registry (default: $ATSOURCE_REGISTRY or ~/.local/share/atsource/registry.db).",
)
@click.option("--share", metavar="GROUP", help="MQTT shared subscription group ($share/GROUP/..).")
@click.option(
    "--client-id",
    help="MQTT client id of the persistent session (default: stable per host, subscription and "
    "store, so a restarted receiver gets the frames the broker kept for it).",
)
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False),
    envvar="ATSOURCE_MQTT_CA",
    help="CA certificate file for an mqtts:// broker (default: the system's CAs; "
    "$ATSOURCE_MQTT_CA).",
)
@policy_option
@click.option(
    "--prune-every",
    default="1h",
    show_default=True,
    metavar="DURATION",
    help="Delete readings past their policy's retention this often while receiving (0: never).",
)
@click.option(
    "--metrics-port",
    metavar="[HOST:]PORT",
    help="Serve Prometheus metrics on this port (host default 127.0.0.1).",
)
@click.option("--count", type=click.IntRange(min=1), help="Stop after N accepted frames.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop after S seconds.")
@click.option("--stats", is_flag=True, help="Print accepted and rejected counts from the store.")
@click.option("--export", "export_fmt", type=click.Choice(["csv", "json"]), help="Export readings.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    help="Export file (- for stdout).",
)
@click.option("--quiet", "-q", is_flag=True, help="No line per frame.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary at the end.")
def receive(
    source: str | None,
    db: str | None,
    registry: Path | None,
    share: str | None,
    client_id: str | None,
    ca: str | None,
    policy_files: tuple[Path, ...],
    prune_every: str,
    metrics_port: str | None,
    count: int | None,
    timeout: float | None,
    stats: bool,
    export_fmt: str | None,
    out: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Verify, decrypt and store uplink frames; print stats; export readings.

    Each frame is checked (docs/frame.md), replay-checked against the window kept in the store,
    decrypted with the device's key from the registry and stored (SQLite, or PostgreSQL for a
    postgresql:// --db); a rejected frame is counted under its reason. While receiving,
    readings past their policy's retention are deleted every --prune-every. Exit 4 when
    --count frames were not accepted in time.

    \b
    Examples:
      atsource receive --from mqtt://broker.local/atsource/up/#
      atsource receive --from mqtt://rx:secret@broker:1883/atsource/up/# --share rx
      atsource receive --from mqtt://broker/atsource/up/# --db postgresql://rx@db/atsource
      atsource receive --from captured.hex --count 10 --timeout 60
      atsource receive --from mqtt://broker/atsource/up/# --metrics-port 9108
      atsource receive --stats --json
      atsource receive --export csv --out readings.csv
    """
    from .receiver import MqttSource, Receiver, RunSummary, open_source
    from .store import default_db, open_store

    if export_fmt and out is None:
        raise UserError("--export needs --out FILE (- for stdout)")
    if out is not None and not export_fmt:
        raise UserError("--out needs --export csv|json")
    if as_json and str(out) == "-":
        raise UserError("--json and --out - would both write to stdout: give --out FILE")
    if source is None and not stats and export_fmt is None:
        raise UserError("nothing to do: give --from SOURCE, --stats or --export FORMAT")
    prune_s = parse_duration(prune_every, "--prune-every")
    listen = parse_listen(metrics_port) if metrics_port else None
    src = open_source(source, share=share, client_id=client_id, ca=ca) if source else None
    spec = db or default_db()

    summary: RunSummary | None = None
    with open_store(spec) as store:
        if src is not None:
            from .registry import Registry

            reg = Registry.open(registry, create=False)  # (before anything is written)
            register_policies(store, policy_files)
            if isinstance(src, MqttSource):
                if src.client_id is None:
                    src.client_id = default_client_id(src.subscription, store.name)
                sub, cid = src.subscription, src.client_id

                def ready() -> None:
                    click.echo(f"receive: subscribed to {sub} as {cid}", err=True)

                src.on_ready = ready
            rx = Receiver(store, reg.key_entry)
            metrics = None
            if listen is not None:
                from .metrics import ReceiverMetrics

                metrics = ReceiverMetrics()
                try:
                    port = metrics.serve(listen[1], listen[0])
                except OSError as e:
                    raise UserError(
                        f"cannot serve metrics on {metrics_port}: {e.strerror}"
                    ) from None
                click.echo(f"receive: metrics on http://{listen[0]}:{port}/metrics", err=True)

            def show(res: Any) -> None:
                if metrics is not None:
                    metrics.observe(res)
                if not quiet and not as_json:
                    click.echo(_line(res))

            pruner = Pruner(spec, prune_s) if prune_s > 0 else None
            click.echo(f"receive: from {src.name} into {store.name}", err=True)
            if pruner:
                pruner.start()
            try:
                summary = src.run(rx, count=count, timeout=timeout, on_result=show)
            finally:
                if pruner:
                    pruner.stop()
                if metrics is not None:
                    metrics.close()
        report: dict[str, Any] = {}
        if summary is not None:
            report["run"] = summary.as_dict()
        if stats:
            report["stats"] = stats_dict(store.stats())
        if export_fmt:
            assert out is not None
            fh: IO[str]
            if str(out) == "-":
                fh = sys.stdout
                n = export_readings(store.readings(), export_fmt, fh)
            else:
                try:
                    with open(out, "w", encoding="utf-8", newline="") as fh:
                        n = export_readings(store.readings(), export_fmt, fh)
                except OSError as e:
                    raise UserError(f"cannot write {out}: {e.strerror}") from None
            report["export"] = {"format": export_fmt, "out": str(out), "readings": n}
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        if summary is not None:
            rej = sum(summary.rejected.values())
            click.echo(
                f"receive: {summary.frames} frame(s), {summary.accepted} accepted, {rej} "
                f"rejected, {summary.bad_lines} bad line(s); ended by {summary.ended}",
                err=True,
            )
        if stats:
            _print_stats(report["stats"])
        if "export" in report and str(out) != "-":
            click.echo(f"receive: {report['export']['readings']} reading(s) written to {out}")
    if count is not None and summary is not None and summary.accepted < count:
        sys.exit(EXIT_SHORT)


# ---- store ---------------------------------------------------------------------------------


@click.group("store")
def store_group() -> None:
    """The readings store: retention."""


@store_group.command("prune")
@db_option
@policy_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def store_prune(db: str | None, policy_files: tuple[Path, ...], as_json: bool) -> None:
    """Delete readings older than their policy's retention.receiver_days.

    Each reading names its policy (the 4-byte hash in every record); its age counts from its
    window start. Readings naming a policy the store does not know (give it with --policy)
    are kept and counted. The running receiver does the same every --prune-every.

    \b
    Examples:
      atsource store prune
      atsource store prune --policy site/policy.json --json
    """
    from .store import default_db, open_store

    with open_store(db or default_db()) as store:
        register_policies(store, policy_files)
        res = store.prune()
    d = res.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"store prune: {d['deleted_total']} reading(s) deleted past retention")
    for h, n in d["deleted"].items():
        click.echo(f"  policy {h}: {n}")
    if d["kept_unknown_policy"]:
        click.echo(
            f"  {d['kept_unknown_policy']} reading(s) kept: their policy is unknown (add it "
            "with --policy FILE)"
        )
