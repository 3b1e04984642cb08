"""The demo's report: one self-contained HTML page with matplotlib plots against ground truth."""

from __future__ import annotations

import base64
import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BELOW_K, EXHAUSTED = 1, 2


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _t(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _stream(recs: list[dict[int, Any]], sid: int) -> list[dict[int, Any]]:
    return sorted((r for r in recs if r.get(7) == sid), key=lambda r: r[0])


def _truth(world: Any, window_s: int) -> dict[int, dict[str, Any]]:
    return {row["start"]: row for row in world.ground_truth(window_s)}


def _plot_temperature(out: Path, devices: dict[str, Any]) -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=110)
    for i, d in enumerate(devices.values()):
        color = f"C{i}"
        truth = _truth(d.world, 900)
        xs = sorted(truth)
        ax.plot([_t(s) for s in xs], [truth[s]["temp_mean_c"] for s in xs], color=color,
                lw=1, alpha=0.5)  # fmt: skip
        env = [r for r in _stream(d.records, 1) if 3 in r]
        ax.plot([_t(r[0]) for r in env], [r[3] / 100 for r in env], ".", color=color, ms=4,
                label=f"{d.member.site} ({d.member.scenario})")  # fmt: skip
    ax.set_title("Temperature per site: released 15-min means (dots) and ground truth (lines)")
    ax.set_ylabel("degC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    p = out / "temperature.png"
    fig.tight_layout()
    fig.savefig(p)
    plt.close(fig)
    return p


def _plot_people(out: Path, devices: dict[str, Any]) -> Path:
    n = len(devices)
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.6 * n), dpi=110, squeeze=False)
    for row, d in enumerate(devices.values()):
        truth = _truth(d.world, 3600)
        for col, (sid, key, label) in enumerate(
            ((5, "addresses_distinct", "BLE distinct devices"), (2, "crossings_in", "doorway in"))
        ):
            ax = axes[row][col]
            recs = _stream(d.records, sid)
            xs = [_t(r[0]) for r in recs]
            ax.bar(xs, [truth.get(r[0], {}).get(key, 0) for r in recs], width=0.035,
                   color="0.8", label="ground truth")  # fmt: skip
            rel = [r for r in recs if 6 in r]
            ax.plot([_t(r[0]) for r in rel], [r[6] for r in rel], "o", ms=4, color="C0",
                    label="released (noised)")  # fmt: skip
            sup = [r for r in recs if r.get(16) == BELOW_K]
            ax.plot([_t(r[0]) for r in sup], [0] * len(sup), "x", ms=6, color="C3",
                    label="withheld: below k")  # fmt: skip
            exh = [r for r in recs if r.get(16) == EXHAUSTED]
            if exh:
                ax.plot([_t(r[0]) for r in exh], [0] * len(exh), "s", ms=5, color="C1",
                        label="budget exhausted")  # fmt: skip
            ax.set_title(f"{d.member.site}: {label} per hour", fontsize=9)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
            if row == 0:
                ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    p = out / "people.png"
    fig.savefig(p)
    plt.close(fig)
    return p


def write(
    out: Path, results: list[Any], devices: dict[str, Any], audit: Any, mqtt: str | None
) -> Path:
    temp = _plot_temperature(out, devices)
    people = _plot_people(out, devices)
    rows = []
    for d in devices.values():
        pivs = sorted(d.pivs)
        missing = d.sent - d.accepted
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(x))}</td>"
                for x in (
                    d.device,
                    d.member.board,
                    d.member.scenario,
                    d.member.site,
                    d.kid,
                    d.sent,
                    d.accepted,
                    sum(d.rejected.values()),
                    f"{pivs[0]}..{pivs[-1]}" if pivs else "-",
                )
            )
            + f"<td class={'ok' if missing == 0 else 'bad'}>{missing}</td></tr>"
        )
    heap = "".join(
        f"<li>{html.escape(r.device)} ({r.member.board}): peak live heap {r.heap_peak} bytes, "
        f"boots {len(r.resets)} ({', '.join(r.resets)}), {r.wall_s:.0f} s of wall time</li>"
        for r in results
    )
    notices = []
    for d in devices.values():
        png = next((Path(p) for p in d.notice if p.endswith(".png")), None)
        if png is not None and png.exists():
            notices.append(
                f"<figure><a href='{html.escape(str(png.parent / 'notice.html'))}'>"
                f"<img src='{_img(png)}' width='260'></a><figcaption>{html.escape(d.device)} "
                f"at {html.escape(d.member.site)}</figcaption></figure>"
            )
    verdict = "ok" if audit.passed else "bad"
    hits = "".join(
        f"<li>{html.escape(h.source)} @ {h.offset}: {html.escape(h.form)}</li>"
        for h in audit.hits[:20]
    )
    via = f"through the MQTT broker {html.escape(mqtt)}" if mqtt else "straight from the boards"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>atsource demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
.ok{{color:#0a0;font-weight:bold}}.bad{{color:#c00;font-weight:bold}}
figure{{display:inline-block;margin:8px}}img{{max-width:100%}}</style></head><body>
<h1>atsource demo: an emulated fleet's day</h1>
<p>{len(devices)} emulated boards were deployed and provisioned through their serial ports with
the real tools, lived a simulated day of their scenario, and sent every record sealed
(COSE, AES-CCM); the receiver verified, decrypted and stored them ({via}).</p>
<h2>Privacy audit: <span class="{verdict}">{"PASS" if audit.passed else "FAIL"}</span></h2>
<p>{html.escape(audit.summary())}. Scanned: each board's console, every file on its flash, and
every record before encryption, for each BLE address and device name of the crowd and their
common encodings (hex, base64, reversed, truncated SHA-256 and HMAC under a zero key).</p>
<ul>{hits}</ul>
<h2>Frames per device</h2>
<table><tr><th>device</th><th>board</th><th>scenario</th><th>site</th><th>kid</th><th>sent</th>
<th>stored</th><th>rejected</th><th>counters</th><th>missing</th></tr>{"".join(rows)}</table>
<ul>{heap}</ul>
<h2>Temperature</h2><img src="{_img(temp)}">
<h2>People, as released by the privacy gate</h2>
<p>Grey bars: what really happened (ground truth). Blue dots: the released, noised count
(two-sided geometric noise scaled to the most one person can add to a window, so that one
person changes all counts together by at most the policy's per-person epsilon a day: see
docs/privacy.md). Red crosses: windows withheld because the noised count was below k.</p>
<img src="{_img(people)}">
<h2>Citizen notices</h2>{"".join(notices)}
</body></html>"""
    report = out / "report.html"
    report.write_text(page)
    return report
