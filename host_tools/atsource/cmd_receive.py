"""`atsource receive`: verify, decrypt and store uplinks; report stats; export readings."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from .errors import UserError
from .record import FIELD_NAMES, describe

if TYPE_CHECKING:  # the store (cbor2, cryptography) is imported when a command runs
    from .store import Reading, StoreStats

# Exit code when --count N frames were not accepted before the source ended or --timeout.
EXIT_SHORT = 4


def default_db() -> Path:
    env = os.environ.get("ATSOURCE_DB")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "atsource" / "readings.db"


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
    help="mqtt://[user[:pass]@]host[:port]/topic, mqtts://..., file:PATH, a path, or - (stdin).",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="SQLite store (default: $ATSOURCE_DB or ~/.local/share/atsource/readings.db).",
)
@click.option(
    "--registry",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Device registry (default: $ATSOURCE_REGISTRY or ~/.local/share/atsource/registry.db).",
)
@click.option("--share", metavar="GROUP", help="MQTT shared subscription group ($share/GROUP/..).")
@click.option("--client-id", help="MQTT client id: keeps the session, so QoS 1 frames queue.")
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
    db: Path | None,
    registry: Path | None,
    share: str | None,
    client_id: str | None,
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
    decrypted with the device's key from the registry and stored in SQLite; a rejected frame is
    counted under its reason. Exit 4 when --count frames were not accepted in time.

    \b
    Examples:
      atsource receive --from mqtt://broker.local/atsource/up/#
      atsource receive --from mqtt://rx:secret@broker:1883/atsource/up/# --share rx
      atsource receive --from captured.hex --count 10 --timeout 60
      atsource receive --stats --json
      atsource receive --export csv --out readings.csv
    """
    from .receiver import Receiver, RunSummary, open_source
    from .store import SQLiteStore

    if export_fmt and out is None:
        raise UserError("--export needs --out FILE (- for stdout)")
    if out is not None and not export_fmt:
        raise UserError("--out needs --export csv|json")
    if as_json and str(out) == "-":
        raise UserError("--json and --out - would both write to stdout: give --out FILE")
    if source is None and not stats and export_fmt is None:
        raise UserError("nothing to do: give --from SOURCE, --stats or --export FORMAT")
    src = open_source(source, share=share, client_id=client_id) if source else None

    summary: RunSummary | None = None
    with SQLiteStore(db or default_db()) as store:
        if src is not None:
            from .registry import Registry

            reg = Registry.open(registry)
            rx = Receiver(store, reg.key_entry)

            def show(res: Any) -> None:
                if not quiet and not as_json:
                    click.echo(_line(res))

            click.echo(f"receive: from {src.name}", err=True)
            summary = src.run(rx, count=count, timeout=timeout, on_result=show)
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
