"""The public dashboard (``/``) and its job, lease and provider pages, server-rendered.

No login: everything shown here is already public in the ledger (``/v1/ledger/balances``)
or the provider list. Job pages show state, counts, providers and prices, never the
buyer's input files, parameters or outputs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from gpudepin.coordinator import db, service, store
from gpudepin.coordinator.api import runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.core import ledger
from gpudepin.core.errors import GpudepinError
from gpudepin.core.money import format_amount
from gpudepin.dashboard import charts, figures, history
from gpudepin.economics.viability import NetworkFigures, scorecard

router = APIRouter(include_in_schema=False)

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2430}
header{background:#17202e;color:#fff;padding:14px 24px;display:flex;gap:16px;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:18px 24px;max-width:1240px;margin:auto}
h2{font-size:16px;margin:26px 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:10px}
.card{background:#fff;border-radius:8px;padding:10px 12px;box-shadow:0 1px 2px #0002}
.card .v{font-size:22px;font-weight:650}.card .l{color:#5a6475;font-size:12px}
.card .ago{color:#5a6475;font-size:12px}.up{color:#2c9c5a}.down{color:#c0392b}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0002}
th,td{padding:5px 9px;border-bottom:1px solid #e6e8ec;text-align:left;font-size:13px}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.chart{background:#fff;margin:0;padding:8px;border-radius:8px;box-shadow:0 1px 2px #0002}
.chart svg{width:100%;height:auto}.chart text{font-size:10px;fill:#5a6475}
.chart .grid{stroke:#e6e8ec}.none{color:#5a6475;font-style:italic}
.pass{color:#2c9c5a;font-weight:600}.warn{color:#c98a00;font-weight:600}
.fail{color:#c0392b;font-weight:600}.no_data{color:#8a93a3}
.grade{font-size:20px;font-weight:700;background:#fff;color:#17202e;border-radius:6px;
 padding:2px 10px}
code{font-size:12px}
"""

REFRESH_JS = """
<label style="margin-left:auto;font-size:12px">
<input type="checkbox" id="live" checked> live</label>
<script>
setTimeout(function(){ if (document.getElementById('live').checked) location.reload(); }, 30000);
</script>
"""


def _page(title: str, body: str, *, live: bool = False, status: int = 200) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><a href="/">gpudepin network</a><span>{escape(title)}</span>'
        f"{REFRESH_JS if live else ''}</header><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status)


def _not_found(what: str) -> HTMLResponse:
    return _page("not found", f'<p class="none">{escape(what)}</p>', status=404)


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(addr: str | None) -> str:
    if not addr:
        return "-"
    return f'<a href="/providers/{escape(addr)}"><code>{escape(addr[:10])}…</code></a>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    if not rows:
        return '<p class="none">none yet</p>'
    numeric = numeric or set()
    head = "".join(
        f'<th class="{"n" if i in numeric else ""}">{h}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"n" if i in numeric else ""}">{c}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---- the dashboard -------------------------------------------------------------------------

CARDS = (
    ("providers_online", "providers online", "count"),
    ("gpus_online", "GPUs online", "count"),
    ("utilization", "utilization (leased + busy) / online", "share"),
    ("jobs_completed", "jobs completed", "count"),
    ("jobs_24h", "jobs submitted, 24 h", "count"),
    ("leases_24h", "leases started, 24 h", "count"),
    ("volume_24h", "volume paid, 24 h (tokens)", "tokens"),
    ("fees_24h", "protocol fees, 24 h", "tokens"),
    ("burned_24h", "tokens burned, 24 h", "tokens"),
    ("minted_24h", "emissions, 24 h", "tokens"),
    ("audits_24h", "audits, 24 h", "count"),
    ("slashes_24h", "slashes, 24 h", "count"),
)


def _show(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "share":
        return f"{float(value):.0%}"
    return escape(str(value))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _arrow(delta: float) -> str:
    return "&#9650;" if delta > 0 else "&#9660;" if delta < 0 else "="


def _cards(now: dict[str, Any], ago: dict[str, Any] | None) -> str:
    out = []
    for key, label, unit in CARDS:
        v = now.get(key)
        if ago is None or key not in ago:
            then = '<div class="ago">24 h ago: no sample yet</div>'
        else:
            delta = _num(v) - _num(ago[key])
            cls = "up" if delta > 0 else "down" if delta < 0 else ""
            then = (
                f'<div class="ago">24 h ago: {_show(ago[key], unit)} '
                f'<span class="{cls}">{_arrow(delta)}</span></div>'
            )
        out.append(
            f'<div class="card" data-figure="{key}"><div class="l">{label}</div>'
            f'<div class="v">{_show(v, unit)}</div>{then}</div>'
        )
    return f'<div class="cards">{"".join(out)}</div>'


def _day(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%m-%d")


def _hour(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%d %H:%M")


def _charts(samples: list[dict[str, Any]], days: list[dict[str, Any]], live: dict[str, Any]) -> str:
    pts = [*samples, live]
    util = charts.line_chart(
        "utilization over time, (leased + busy) / online",
        [_hour(p["at"]) for p in pts],
        {"utilization": [_num(p.get("utilization")) for p in pts]},
        top=1.0,
    )
    online = charts.line_chart(
        "providers and GPUs online",
        [_hour(p["at"]) for p in pts],
        {
            "providers": [_num(p.get("providers_online")) for p in pts],
            "GPUs": [_num(p.get("gpus_online")) for p in pts],
        },
    )
    labels = [_day(d["day_start"]) for d in days]
    work = charts.bar_chart(
        "jobs and leases per day",
        labels,
        {"jobs": [d["jobs"] for d in days], "leases": [d["leases"] for d in days]},
    )
    money = charts.bar_chart(
        "tokens per day",
        labels,
        {
            "volume paid": [figures.tokens(d["volume"]) for d in days],
            "fees": [figures.tokens(d["fees"]) for d in days],
            "burned": [figures.tokens(d["burned"]) for d in days],
            "emissions": [figures.tokens(d["minted"]) for d in days],
        },
    )
    return f'<div class="grid2">{util}{online}{work}{money}</div>'


def _scorecard_html(card: dict[str, Any]) -> str:
    rows = [
        [
            escape(m["pillar"]),
            escape(m["name"]),
            "-" if m["value"] is None else f"{m['value']:.3g}",
            escape(m["threshold"]),
            f'<span class="{m["status"]}">{m["status"]}</span>',
            escape(m["explanation"]),
        ]
        for m in card["metrics"]
    ]
    return (
        f'<p>grade <span class="grade" id="viability-grade">{escape(card["grade"])}</span></p>'
        + _table(["pillar", "metric", "value", "threshold", "status", "why"], rows, {2})
    )


def dashboard_html(rt: Runtime) -> str:
    """The body of ``/``: every figure, computed fresh."""
    now = rt.clock()
    ttl, usd = rt.settings.assignment_ttl_s, rt.settings.token_usd
    with rt.reader.connect() as conn:
        snap = figures.snapshot(conn, now, ttl, usd)
        live = figures.headline(conn, now, ttl).to_dict()
        samples = history.since(conn, now - 7 * figures.DAY, limit=200)
        days = figures.daily(conn, now, 14)
        jobs = list(conn.execute(select(db.jobs).order_by(db.jobs.c.created_at.desc()).limit(15)))
        providers = service.list_providers(conn)
        done = service.provider_task_counts(conn)
    h, ago = snap["headline"], snap["ago_24h"]
    card = scorecard(NetworkFigures.from_dict(snap["network_figures"])).to_dict()

    regions = [
        [
            escape(r["region"]),
            str(r["providers"]),
            str(r["gpus"]),
            escape(", ".join(f"{c} x {n}" for c, n in r["classes"].items())),
        ]
        for r in snap["regions"]
    ]
    classes = [[escape(c), str(n)] for c, n in h["gpus_by_class"].items()]
    prices = [
        [
            escape(c),
            str(p["tasks"]),
            f"{p['median_tokens_per_task']:.4g}",
            f"${p['median_usd_per_gpu_hour']:.2f}",
        ]
        for c, p in snap["prices"].items()
    ]
    if snap["market_prints"]:
        market = _generic(snap["market_prints"])
    else:
        market = '<p class="none" id="no-market">no market data yet</p>'
    low, high = snap["quoted_rtx4090_usd_per_day"]
    earnings = [
        [
            escape(c),
            f"{e['gpus']:.0f}",
            f"{e['tokens_per_gpu_day']:.4g}",
            f"${e['usd_per_gpu_day']:.2f}",
        ]
        for c, e in snap["earnings_per_gpu_day"].items()
    ]
    sla = snap["sla"]
    sla_text = (
        f"{sla['met']} of {sla['leases']} SLA leases met their SLA "
        f"({sla['met'] / sla['leases']:.1%})"
        if sla["leases"]
        else "no SLA lease has ended yet"
    )
    trust = snap["trust_30d"]
    epochs = (
        _generic(snap["settlement_epochs"])
        if snap["settlement_epochs"]
        else '<p class="none">no settlement epochs yet</p>'
    )
    job_rows = [
        [
            f'<a href="/jobs/{escape(j.id)}">{escape(j.id)}</a>',
            escape(j.kind),
            escape(j.state),
            format_amount(j.price_per_task),
            _when(j.created_at),
        ]
        for j in jobs
    ]
    provider_rows = [
        [
            _short(p.address),
            escape(p.name),
            escape(p.region),
            escape(p.gpu_class),
            "online" if now - p.last_seen < ttl else "offline",
            str(done.get(p.address, 0)),
        ]
        for p in providers[-50:]
    ]
    jobs_html = _table(["job", "kind", "state", "price/task", "created"], job_rows)
    providers_html = _table(
        ["address", "name", "region", "class", "status", "tasks done"], provider_rows, {5}
    )
    body = f"""
<h2>Now vs 24 h ago</h2>{_cards(h, ago)}
<h2>Over time</h2>{_charts(samples, days, live)}
<div class="grid2">
 <div><h2>Regions</h2>{_table(["region", "providers", "GPUs", "classes"], regions, {1, 2})}</div>
 <div><h2>GPUs online by class</h2>{_table(["class", "GPUs"], classes, {1})}</div>
</div>
<div class="grid2">
 <div><h2>Clearing prices per GPU class</h2>{market}
  <p>Prices paid for accepted tasks, last 30 days:</p>
  {_table(["class", "tasks", "median tokens/task", "median $/GPU-hour"], prices, {1, 2, 3})}</div>
 <div><h2>Earnings per GPU-day, last 24 h</h2>
  {_table(["class", "GPUs online", "tokens/GPU-day", "$/GPU-day"], earnings, {1, 2, 3})}
  <p>Often quoted for an RTX 4090: <b>${low:.0f}&ndash;{high:.0f}/day</b>
  (gross, token-inclusive, at ~36&ndash;83% utilization; see market-facts.md).
  1 token = ${snap["token_usd"]:g}.</p></div>
</div>
<div class="grid2">
 <div><h2>Verification</h2>
  <p>{h["audits_24h"]} audits, {h["audit_failures_24h"]} failed, {h["slashes_24h"]} slashes in 24 h;
  {trust["audits"]} audits and {trust["failures"]} failures in 30 days.</p>
  <h2>SLA attainment</h2><p>{sla_text}; {h["sla_breaches_24h"]} SLA credits paid in 24 h.</p></div>
 <div><h2>Settlement epochs</h2>{epochs}</div>
</div>
<h2>Viability scorecard (last 30 days)</h2>{_scorecard_html(card)}
<div class="grid2">
 <div><h2>Recent jobs</h2>{jobs_html}</div>
 <div><h2>Providers</h2>{providers_html}</div>
</div>
<p class="none">Computed from the public ledger at {_when(now)}.
JSON: <a href="/v1/stats">/v1/stats</a>, Prometheus: <a href="/metrics">/metrics</a>.</p>
"""
    return body


def _generic(rows: list[dict[str, Any]]) -> str:
    headers = list(rows[0])
    return _table(
        [escape(h) for h in headers],
        [[escape(_cell(r.get(h))) for h in headers] for r in rows],
    )


def _cell(v: Any) -> str:
    if isinstance(v, float) and v > 1e9:
        return _when(v)
    return "-" if v is None else str(v)


@router.get("/", response_class=HTMLResponse)
def dashboard(rt: Runtime = Depends(runtime)) -> HTMLResponse:
    return _page("network health", dashboard_html(rt), live=True)


# ---- per job, lease and provider ------------------------------------------------------------


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, rt: Runtime = Depends(runtime)) -> HTMLResponse:
    with rt.reader.connect() as conn:
        try:
            job = service.get_job(conn, job_id)
        except GpudepinError:
            return _not_found(f"no job {job_id}")
        tasks = service.job_tasks(conn, job_id)
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.state] = counts.get(t.state, 0) + 1
    paid = sum(t.price for t in tasks if t.state == "accepted")
    rows = [
        [
            escape(t.label),
            f'<span data-state="{escape(t.state)}">{escape(t.state)}</span>',
            str(t.attempts),
            _short(t.provider),
            format_amount(t.price),
        ]
        for t in tasks
    ]
    summary = _table(
        [
            "job",
            "kind",
            "state",
            "buyer",
            "tasks",
            "price/task",
            "escrow",
            "paid",
            "created",
            "updated",
        ],
        [
            [
                f'<span id="job-id">{escape(job.id)}</span>',
                escape(job.kind),
                f'<b id="job-state">{escape(job.state)}</b>',
                f"<code>{escape(job.buyer[:10])}…</code>",
                escape(", ".join(f"{n} {s}" for s, n in sorted(counts.items()))),
                format_amount(job.price_per_task),
                format_amount(job.escrow),
                format_amount(paid),
                _when(job.created_at),
                _when(job.updated_at),
            ]
        ],
    )
    reason = f"<p>reason: {escape(job.reason)}</p>" if job.reason else ""
    body = f"<h2>Job {escape(job.id)}</h2>{summary}{reason}<h2>Tasks</h2>" + _table(
        ["task", "state", "attempts", "provider", "price"], rows, {2, 4}
    )
    return _page(f"job {job.id}", body)


# columns of a lease row that stay private to its buyer
_PRIVATE_LEASE_COLUMNS = ("endpoint", "token", "secret", "url", "workload", "signature", "spec")


@router.get("/leases/{lease_id}", response_class=HTMLResponse)
def lease_page(lease_id: str, rt: Runtime = Depends(runtime)) -> HTMLResponse:
    with rt.reader.connect() as conn:
        if "leases" not in figures.optional_tables(conn):
            return _not_found("this coordinator has no leases yet")
        t = figures._reflect(conn, "leases")
        row = conn.execute(select(t).where(t.c.id == lease_id)).first()
    if row is None:
        return _not_found(f"no lease {lease_id}")
    shown = {
        k: v
        for k, v in row._mapping.items()
        if not any(p in k for p in _PRIVATE_LEASE_COLUMNS) and not isinstance(v, dict | list)
    }
    rows = [
        [escape(k), _short(v) if k == "provider" else escape(_cell(v))] for k, v in shown.items()
    ]
    return _page(f"lease {lease_id}", f"<h2>Lease {escape(lease_id)}</h2>" + _table(["", ""], rows))


@router.get("/providers/{address}", response_class=HTMLResponse)
def provider_page(address: str, rt: Runtime = Depends(runtime)) -> HTMLResponse:
    addr = address.lower()
    now = rt.clock()
    with rt.reader.connect() as conn:
        p = conn.execute(select(db.providers).where(db.providers.c.address == addr)).first()
        if p is None:
            return _not_found(f"no provider {address}")
        tasks = list(
            conn.execute(
                select(db.tasks)
                .where(db.tasks.c.provider == addr)
                .order_by(db.tasks.c.updated_at.desc())
                .limit(30)
            )
        )
        done = service.provider_task_counts(conn).get(addr, 0)
        bal = store.balances_for(
            conn,
            [ledger.earned_account(addr), ledger.held_account(addr), ledger.stake_account(addr)],
        )
    online = now - p.last_seen < rt.settings.assignment_ttl_s
    info = _table(
        [
            "address",
            "name",
            "region",
            "operator",
            "class",
            "GPUs",
            "status",
            "last seen",
            "tasks done",
            "earned",
            "held",
            "stake",
        ],
        [
            [
                f"<code>{escape(p.address)}</code>",
                escape(p.name),
                escape(p.region),
                escape(p.operator),
                escape(p.gpu_class),
                str(figures.devices(p.hardware)),
                "online" if online else "offline",
                _when(p.last_seen),
                str(done),
                *(format_amount(v) for v in bal.values()),
            ]
        ],
    )
    rows = [
        [
            f'<a href="/jobs/{escape(t.job_id)}">{escape(t.job_id)}</a>',
            escape(t.label),
            escape(t.state),
            format_amount(t.price),
            _when(t.updated_at),
        ]
        for t in tasks
    ]
    body = f"<h2>Provider {escape(p.name)}</h2>{info}<h2>Recent tasks</h2>" + _table(
        ["job", "task", "state", "price", "updated"], rows, {3}
    )
    return _page(f"provider {p.name}", body)


# ---- Prometheus ---------------------------------------------------------------------------------


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition; the gauges are computed from the books at scrape time."""
    from gpudepin.dashboard.metrics import CONTENT_TYPE, exposition

    return Response(exposition(request.app), media_type=CONTENT_TYPE)
