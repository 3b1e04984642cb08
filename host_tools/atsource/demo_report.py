"""The demo's report, written for a city official: one HTML page in a self-contained folder
(plots and notices embedded, links relative), every stream against ground truth on a UTC time
axis, the error split into privacy noise (known from the policy) and sensing error (the rest),
the privacy audit in one sentence with its figures behind a fold, and a partial report naming
the boards that failed."""

from __future__ import annotations

import base64
import html
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from .record import FIELDS, KEY, STATUS_CODE, STREAM_ID  # noqa: E402  (the catalogue's)

BELOW_K, EXHAUSTED = STATUS_CODE["below-k"], STATUS_CODE["budget-exhausted"]
K_START, K_STREAM, K_COUNT = KEY["window_start"], KEY["stream"], KEY["count"]
K_STATUS, K_EPSILON = KEY["count_status"], KEY["noise_epsilon"]
ENV_ID = STREAM_ID["env"]
# (stream id, ground-truth column, label): the people streams, as the gate releases them.
PEOPLE = (
    (STREAM_ID["door_in"], "crossings_in", "doorway: people going in"),
    (STREAM_ID["door_out"], "crossings_out", "doorway: people going out"),
    (STREAM_ID["motion"], "pir_triggers", "movement (PIR triggers)"),
    (STREAM_ID["ble"], "addresses_distinct", "phones nearby (distinct BLE addresses)"),
)
# (stream id, record key, ground-truth column, its divisor to the plotted unit, label): the
# streams plotted against the truth by 15-minute window.
ENV = (
    (ENV_ID, KEY["temperature_mean_c"], "temp_mean_c", 1, "temperature (°C)"),
    (ENV_ID, KEY["humidity_mean_pct"], "rh_mean", 1, "relative humidity (%)"),
    (ENV_ID, KEY["pressure_mean_hpa"], "pressure_mean_pa", 100, "air pressure (hPa)"),
)
SENSES = (
    (STREAM_ID["noise"], KEY["laeq"], "laeq_db", 1, "noise level LAeq (dB(A))"),
    (STREAM_ID["air"], KEY["pm2_5_mean"], "pm2_5_mean", 1, "particulates PM2.5 (µg/m³)"),
)


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _t(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _stream(recs: list[dict[int, Any]], sid: int) -> list[dict[int, Any]]:
    return sorted((r for r in recs if r.get(K_STREAM) == sid), key=lambda r: r[K_START])


def _truth(world: Any, window_s: int) -> dict[int, dict[str, Any]]:
    rows = {row["start"]: row for row in world.ground_truth(window_s)}
    _add_pir_truth(world, window_s, rows)
    return rows


def _add_pir_truth(world: Any, window_s: int, rows: dict[int, dict[str, Any]]) -> None:
    """PIR triggers per window: the rising edges of the retriggerable PIR output, from every
    person's motion in the scenario (what the firmware's MotionCounter counts)."""
    from .emulator.world import PIR_HOLD_US

    for row in rows.values():
        row["pir_triggers"] = 0
    times = sorted(m for p in getattr(world, "people", []) for m in p.motion_us)
    last: int | None = None
    for m in times:
        if last is None or m - last > PIR_HOLD_US:
            start = (m // 1_000_000) // window_s * window_s
            if start in rows:
                rows[start]["pir_triggers"] += 1
        last = m


def _time_axis(ax: Any) -> None:
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=UTC))
    ax.set_xlabel("time of day (UTC)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


def _noise_halfwidth(eps_milli: int, p: float = 0.1) -> int:
    """Half-width of the central 90 % of two-sided geometric noise at epsilon (thousandths):
    P(|N| >= m) = 2 a^m / (1 + a), a = exp(-epsilon)."""
    if eps_milli <= 0:
        return 0
    a = math.exp(-eps_milli / 1000)
    return max(0, math.ceil(math.log(p * (1 + a) / 2) / math.log(a)))


def _noise_var(eps_milli: int) -> float:
    """Variance of two-sided geometric noise: 2a / (1 - a)^2."""
    if eps_milli <= 0:
        return 0.0
    a = math.exp(-eps_milli / 1000)
    return 2 * a / (1 - a) ** 2


def _plot_windows(out: Path, devices: dict[str, Any], rows: Any, title: str, name: str) -> Path:
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 2.8 * len(rows)), dpi=110, sharex=True)
    for i, d in enumerate(devices.values()):
        color = f"C{i}"
        truth = _truth(d.world, 900)
        xs = sorted(truth)
        for ax, (sid, key, col, tdiv, label) in zip(axes, rows, strict=True):
            ax.plot([_t(s + 450) for s in xs], [truth[s].get(col, math.nan) / tdiv for s in xs],
                    color=color, lw=1, alpha=0.5)  # fmt: skip
            rel = [r for r in _stream(d.records, sid) if key in r]
            # The catalogue's scale turns the record's integers into the plotted unit.
            scale = FIELDS[key].scale
            ax.plot([_t(r[K_START] + 450) for r in rel], [r[key] / scale for r in rel], ".",
                    color=color, ms=3, label=f"{d.member.site} ({d.member.scenario})")  # fmt: skip
            ax.set_ylabel(label, fontsize=8)
    for ax in axes:
        _time_axis(ax)
    axes[0].set_title(title)
    axes[0].legend(fontsize=7)
    p = out / name
    fig.tight_layout()
    fig.savefig(p)
    plt.close(fig)
    return p


def _plot_env(out: Path, devices: dict[str, Any]) -> Path:
    title = "Climate: released 15-minute means (dots) and what really happened (lines)"
    return _plot_windows(out, devices, ENV, title, "climate.png")


def _plot_senses(out: Path, devices: dict[str, Any]) -> Path | None:
    if not any(_stream(d.records, sid) for d in devices.values() for sid, *_ in SENSES):
        return None  # the policy released neither
    title = "Noise and air: released 15-minute values (dots) and the truth (lines)"
    return _plot_windows(out, devices, SENSES, title, "senses.png")


def _plot_people(out: Path, devices: dict[str, Any]) -> Path:
    n = len(devices)
    fig, axes = plt.subplots(n, len(PEOPLE), figsize=(15, 2.7 * n), dpi=100, squeeze=False)
    for row, d in enumerate(devices.values()):
        truth = _truth(d.world, 3600)
        for col, (sid, key, label) in enumerate(PEOPLE):
            ax = axes[row][col]
            recs = _stream(d.records, sid)
            xs = [_t(r[K_START] + 1800) for r in recs]
            want = [truth.get(r[K_START], {}).get(key, 0) for r in recs]
            band = [_noise_halfwidth(int(r.get(K_EPSILON, 0))) for r in recs]
            ax.bar(xs, want, width=0.035, color="0.82", label="what really happened")
            ax.errorbar(xs, want, yerr=band, fmt="none", ecolor="0.55", elinewidth=0.8,
                        capsize=1.5, label="privacy noise, 90 % range")  # fmt: skip
            rel = [(x, r) for x, r in zip(xs, recs, strict=True) if K_COUNT in r]
            ax.plot([x for x, _ in rel], [r[K_COUNT] for _, r in rel], "o", ms=3.5, color="C0",
                    label="released (noised)")  # fmt: skip
            sup = [x for x, r in zip(xs, recs, strict=True) if r.get(K_STATUS) == BELOW_K]
            ax.plot(sup, [0] * len(sup), "x", ms=5, color="C3", label="withheld: below k")
            exh = [x for x, r in zip(xs, recs, strict=True) if r.get(K_STATUS) == EXHAUSTED]
            if exh:
                ax.plot(exh, [0] * len(exh), "s", ms=4, color="C1", label="budget exhausted")
            ax.set_title(f"{d.member.site}: {label}, per hour", fontsize=8)
            _time_axis(ax)
            if row == 0 and col == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    p = out / "people.png"
    fig.savefig(p)
    plt.close(fig)
    return p


def error_split(devices: dict[str, Any]) -> list[dict[str, Any]]:
    """Per people stream, over every released full hour of every board: the observed error
    against ground truth, and its split. Noise and sensing error are independent, so their
    variances add: sensing error = sqrt(observed mean square - the noise's known variance)."""
    out = []
    for sid, key, label in PEOPLE:
        errs: list[float] = []
        noise_var: list[float] = []
        for d in devices.values():
            truth = _truth(d.world, 3600)
            for r in _stream(d.records, sid):
                row = truth.get(r[K_START])
                if 6 not in r or row is None or row["covered_s"] < 3600:
                    continue
                errs.append(r[K_COUNT] - row[key])
                noise_var.append(_noise_var(int(r.get(K_EPSILON, 0))))
        if not errs:
            continue
        mse = sum(e * e for e in errs) / len(errs)
        nv = sum(noise_var) / len(noise_var)
        out.append(
            {
                "stream": label,
                "windows": len(errs),
                "observed_rms": math.sqrt(mse),
                "noise_rms": math.sqrt(nv),
                "sensing_rms": math.sqrt(max(0.0, mse - nv)),
                "bias": sum(errs) / len(errs),
            }
        )
    return out


def audit_sentence(audit: Any, phones: int) -> str:
    if audit.passed:
        return (
            f"No trace of any of the {phones:,} phones the sensors saw was found in anything "
            "the sensors printed, stored or sent."
        )
    return (
        f"Traces of phones were found {len(audit.hits)} time(s) in what the sensors printed, "
        "stored or sent: the sensors must not be deployed until this is fixed."
    )


def write(
    out: Path,
    results: list[Any],
    devices: dict[str, Any],
    audit: Any,
    mqtt: str | None,
    failures: dict[str, str] | None = None,
    phones: int = 0,
) -> Path:
    failures = failures or {}
    e = html.escape
    ok_devices = {k: d for k, d in devices.items() if k not in failures}
    env = _plot_env(out, ok_devices) if ok_devices else None
    people = _plot_people(out, ok_devices) if ok_devices else None
    senses = _plot_senses(out, ok_devices) if ok_devices else None
    rows = []
    for d in devices.values():
        pivs = sorted(d.pivs)
        missing = d.sent - d.accepted
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{e(str(x))}</td>"
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
        f"<li>{e(r.device)} ({r.member.board}): peak live heap {r.heap_peak} bytes, "
        f"boots {len(r.resets)} ({', '.join(r.resets)}), {r.wall_s:.0f} s of wall time</li>"
        for r in results
    )
    notices = []
    for d in devices.values():
        png = next((Path(p) for p in d.notice if p.endswith(".png")), None)
        if png is not None and png.exists():
            # Relative link, embedded image: the report folder can be moved or archived.
            link = os.path.relpath(png.parent / "notice.html", out)
            notices.append(
                f"<figure><a href='{e(link)}'><img src='{_img(png)}' width='380' "
                f"alt='notice of {e(d.device)}'></a><figcaption>{e(d.device)} at "
                f"{e(d.member.site)}</figcaption></figure>"
            )
    register = ""
    if (out / "register" / "index.html").exists():
        register = (
            "<p>The fleet's <a href='register/index.html'>public register</a>: every sensor, "
            "its notice and its signed history (check it with <code>atsource register "
            "verify</code>).</p>"
        )
    verdict = "ok" if audit.passed else "bad"
    hits = "".join(f"<li>{e(h.source)} @ {h.offset}: {e(h.form)}</li>" for h in audit.hits[:20])
    split = "".join(
        f"<tr><td>{e(s['stream'])}</td><td>{s['windows']}</td><td>{s['observed_rms']:.1f}</td>"
        f"<td>{s['noise_rms']:.1f}</td><td>{s['sensing_rms']:.1f}</td><td>{s['bias']:+.1f}</td></tr>"
        for s in error_split(ok_devices)
    )
    failed = ""
    if failures:
        items = "".join(f"<li><b>{e(dev)}</b>: {e(why)}</li>" for dev, why in failures.items())
        failed = (
            f"<h2 class='bad'>Partial report: {len(failures)} board(s) failed</h2><ul>{items}</ul>"
            "<p>Everything below covers the boards that completed their day.</p>"
        )
    via = f"through the MQTT broker {e(mqtt)}" if mqtt else "straight from the boards"
    day = ""
    if ok_devices:
        w = next(iter(ok_devices.values())).world
        day = _t(w.start_us // 1_000_000).strftime("%Y-%m-%d")
    plots = ""
    senses_html = ""
    if senses is not None:
        senses_html = f"""<h2>Noise and air</h2>
<p>The noise level (A-weighted, in dB(A): the sensor measures loudness in short blocks and never
records sound) and fine particulates (PM2.5) each sensor released every 15 minutes (dots),
against the scenario's truth (lines); times are UTC.</p>
<img src="{_img(senses)}" alt="noise and air plots">
"""
    if env is not None and people is not None:
        plots = f"""<h2>Climate</h2>
<p>What each sensor released every 15 minutes (dots) against the scenario's real weather
(lines), on {day}; times are UTC.</p>
<img src="{_img(env)}" alt="climate plots">
{senses_html}<h2>People, as released by the privacy gate</h2>
<p>Grey bars: what really happened in each hour. Grey whiskers: where the privacy noise alone
puts the released count 9 times out of 10. Blue dots: the released count. Red crosses: hours
withheld because fewer than k = 10 were counted. Times are UTC.</p>
<img src="{_img(people)}" alt="people plots">
<h2>How far from the truth, and why</h2>
<p>Two things move a released count away from what happened: the sensor's own error (a missed
doorway crossing, a phone out of range) and the random noise added on purpose so no single
person can be singled out. The noise's size is fixed by the policy; the rest is sensing error.
Root-mean-square errors in people per hour, over every full hour released:</p>
<table><tr><th>stream</th><th>hours</th><th>observed error</th><th>privacy noise</th>
<th>sensing error</th><th>average bias</th></tr>{split}</table>"""
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>atsource demo report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222;line-height:1.45}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;font-size:13px}}
.ok{{color:#0a0;font-weight:bold}}.bad{{color:#c00;font-weight:bold}}
figure{{display:inline-block;margin:8px}}img{{max-width:100%}}</style></head><body>
<h1>atsource demo: a day of an emulated sensor fleet</h1>
<p>{len(devices)} emulated sensors were installed the way a technician installs real ones
(firmware copied and keys provisioned through their serial ports), lived a simulated day of
their street, and sent every record encrypted and signed; the receiver checked, decrypted and
stored them ({via}).</p>
{failed}
<h2>Privacy audit: <span class="{verdict}">{"PASS" if audit.passed else "FAIL"}</span></h2>
<p><strong>{e(audit_sentence(audit, phones))}</strong></p>
<details><summary>The figures behind this sentence</summary>
<p>{e(audit.summary())}. Scanned: each board's console, every file on its flash, and every
record before encryption, for each Bluetooth address and device name of the simulated crowd and
their common encodings (hex, base64, reversed, truncated SHA-256 and HMAC under a zero key).</p>
<ul>{hits}</ul></details>
{plots}
<h2>Frames per device</h2>
<table><tr><th>device</th><th>board</th><th>scenario</th><th>site</th><th>kid</th><th>sent</th>
<th>stored</th><th>rejected</th><th>counters</th><th>missing</th></tr>{"".join(rows)}</table>
<ul>{heap}</ul>
<h2>Citizen notices</h2>{register}{"".join(notices)}
</body></html>"""
    report = out / "report.html"
    report.write_text(page)
    return report
