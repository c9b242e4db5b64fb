"""Every figure of the public dashboard, from the ledger, events, jobs, tasks and providers.

One module computes them so the HTML page, ``/metrics``, ``GET /v1/stats`` (and so
``gpudepin stats``) and the viability scorecard always agree. Money stays in integer base
units here; USD figures use ``token_usd``, the price of one token the coordinator is told
(a local network pegs it at $1).

Definitions:

* a provider is **online** when it was seen within ``online_ttl_s``; it brings
  ``max(1, gpu_count)`` devices of its GPU class (a CPU-only machine is one ``cpu`` device);
* **busy** providers hold an assigned task, **leased** ones an active lease (when the lease
  tables exist); utilization = (leased + busy) / online;
* **volume** is what buyers paid for accepted work: the gross of every ``pay`` and
  ``pay_held`` transaction; **fees** the protocol's part of it; **burned** every posting
  to ``protocol:burned`` (fee burns and burned slashes); **emissions** tokens minted to
  providers by a ``mint``/``emission``/``reward`` transaction;
* **earnings per GPU-day** of a class: what its providers earned in the last 24 h over the
  devices of that class online now.

Tables that other parts of the coordinator add (leases, verification, market prints,
settlement epochs) are read when present and reported as absent otherwise.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, inspect, select

from gpudepin.coordinator import db
from gpudepin.core import ledger
from gpudepin.core.hardware import CATALOG, Tier
from gpudepin.core.jobs import JobState, TaskState
from gpudepin.core.money import UNIT
from gpudepin.economics.viability import NetworkFigures

DAY = 86_400.0
PAY_KINDS = ("pay", "pay_held")
EMISSION_KINDS = ("mint", "emission", "reward")
# The often quoted income of an RTX 4090 owner (shared/data/market-facts.md: gross,
# token-inclusive income at ~36-83% utilization, not profit).
QUOTED_RTX4090_USD_PER_DAY = (3.0, 7.0)


def tokens(units: int) -> float:
    """Base units as whole tokens (display only: never feed this back into the ledger)."""
    return int(units) / float(UNIT)


def optional_tables(conn: Connection) -> set[str]:
    """Names of every table in the database (the optional domains' tables among them)."""
    return set(inspect(conn).get_table_names())


def _reflect(conn: Connection, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=conn)


# ---- providers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    """Who is online now, and what they bring."""

    providers_total: int
    providers_online: int
    gpus_online: int
    gpus_by_class: dict[str, int]
    gpus_by_region: dict[str, int]
    region_table: list[dict[str, Any]]  # region, providers, gpus, classes
    online: dict[str, str]  # address -> gpu class of every online provider
    classes: dict[str, str]  # address -> gpu class of every provider


def devices(hardware: Any) -> int:
    count = hardware.get("gpu_count", 0) if isinstance(hardware, dict) else 0
    return max(1, int(count or 0))


def fleet(conn: Connection, now: float, online_ttl_s: float) -> Fleet:
    rows = list(conn.execute(select(db.providers)))
    by_class: dict[str, int] = defaultdict(int)
    by_region: dict[str, int] = defaultdict(int)
    regions: dict[str, dict[str, Any]] = {}
    online: dict[str, str] = {}
    for p in rows:
        if now - p.last_seen >= online_ttl_s:
            continue
        n = devices(p.hardware)
        online[p.address] = p.gpu_class
        by_class[p.gpu_class] += n
        by_region[p.region] += n
        r = regions.setdefault(p.region, {"region": p.region, "providers": 0, "gpus": 0})
        r["providers"] += 1
        r["gpus"] += n
        r.setdefault("classes", defaultdict(int))[p.gpu_class] += n
    table = [
        {**r, "classes": dict(sorted(r["classes"].items()))}
        for r in sorted(regions.values(), key=lambda r: (-r["gpus"], r["region"]))
    ]
    return Fleet(
        providers_total=len(rows),
        providers_online=len(online),
        gpus_online=sum(by_class.values()),
        gpus_by_class=dict(sorted(by_class.items())),
        gpus_by_region=dict(sorted(by_region.items())),
        region_table=table,
        online=online,
        classes={p.address: p.gpu_class for p in rows},
    )


def busy_providers(conn: Connection) -> set[str]:
    """Providers holding an assigned task right now."""
    q = select(db.tasks.c.provider).where(db.tasks.c.state == TaskState.ASSIGNED.value)
    return {r[0] for r in conn.execute(q.distinct()) if r[0]}


def leased_providers(conn: Connection, present: set[str]) -> set[str]:
    """Providers with an active lease (empty while the lease tables do not exist)."""
    if "leases" not in present:
        return set()
    t = _reflect(conn, "leases")
    if "provider" not in t.c or "state" not in t.c:
        return set()
    q = select(t.c.provider).where(t.c.state == "active").distinct()
    return {r[0] for r in conn.execute(q) if r[0]}


# ---- the ledger -----------------------------------------------------------------------


@dataclass
class Flows:
    """Money that moved in a window, from the journal."""

    volume: int = 0
    fees: int = 0
    burned: int = 0
    minted: int = 0
    provider_income: int = 0  # providers' part of paid work
    enterprise_volume: int = 0
    slashes: int = 0
    sla_credits: int = 0
    sla_credit_amount: int = 0
    earned_by_provider: dict[str, int] = field(default_factory=dict)


def _entries(conn: Connection, since: float, until: float) -> list[Any]:
    q = (
        select(
            db.ledger_entries.c.txn_id,
            db.ledger_entries.c.at,
            db.ledger_entries.c.kind,
            db.ledger_entries.c.account,
            db.ledger_entries.c.amount,
        )
        .where(db.ledger_entries.c.at >= since, db.ledger_entries.c.at < until)
        .order_by(db.ledger_entries.c.id)
    )
    return list(conn.execute(q))


def _owner(account: str) -> str:
    return account.split(":", 1)[1] if ":" in account else ""


def flows_of(entries: Iterable[Any], classes: dict[str, str]) -> Flows:
    """Sum journal rows into flows; ``classes`` maps providers to their GPU class."""
    out = Flows()
    earned: dict[str, int] = defaultdict(int)
    txns: dict[str, list[Any]] = defaultdict(list)
    for e in entries:
        txns[e.txn_id].append(e)
    for legs in txns.values():
        kind = legs[0].kind
        if kind in PAY_KINDS:
            gross = -sum(e.amount for e in legs if e.amount < 0)
            out.volume += gross
            for e in legs:
                if e.account == ledger.FEES:
                    out.fees += e.amount
                elif e.account.startswith(("earned:", "held:")) and e.amount > 0:
                    who = _owner(e.account)
                    earned[who] += e.amount
                    out.provider_income += e.amount
                    cls = CATALOG.get(classes.get(who, ""))
                    if cls is not None and cls.tier is Tier.ENTERPRISE:
                        out.enterprise_volume += gross
        elif kind in EMISSION_KINDS:
            for e in legs:
                if e.amount > 0 and e.account != ledger.WORLD:
                    out.minted += e.amount
                    if e.account.startswith(("earned:", "held:")):
                        earned[_owner(e.account)] += e.amount
        elif kind == "slash":
            out.slashes += 1
        elif kind == "sla_credit":
            out.sla_credits += 1
            out.sla_credit_amount += sum(e.amount for e in legs if e.amount > 0)
        out.burned += sum(e.amount for e in legs if e.account == ledger.BURNED)
    out.earned_by_provider = dict(earned)
    return out


def flows(conn: Connection, since: float, until: float, classes: dict[str, str]) -> Flows:
    return flows_of(_entries(conn, since, until), classes)


# ---- verification, SLA, market, settlement ------------------------------------------------


@dataclass(frozen=True)
class Trust:
    audits: int
    audit_failures: int
    slashes: int


def trust(conn: Connection, since: float, until: float, slashes: int) -> Trust:
    """Audits and failed audits from the event log (``audit*`` events; a failed one's kind
    names a failure or rejection), slashes from the ledger."""
    q = select(db.events.c.kind, func.count()).where(
        db.events.c.kind.like("audit%"), db.events.c.at >= since, db.events.c.at < until
    )
    audits = failures = 0
    for kind, n in conn.execute(q.group_by(db.events.c.kind)):
        if kind in ("audit_planned", "audit_assigned", "audit_requested"):
            continue
        audits += n
        if any(w in kind for w in ("fail", "reject", "fault", "mismatch")):
            failures += n
    return Trust(audits, failures, slashes)


def lease_counts(conn: Connection, present: set[str], since: float, until: float) -> int:
    if "leases" not in present:
        return 0
    t = _reflect(conn, "leases")
    col = next((t.c[c] for c in ("created_at", "awarded_at", "opened_at") if c in t.c), None)
    if col is None:
        return 0
    return int(conn.execute(select(func.count()).where(col >= since, col < until)).scalar() or 0)


def ended_leases(conn: Connection, present: set[str], since: float, until: float) -> int:
    if "leases" not in present:
        return 0
    t = _reflect(conn, "leases")
    if "closed_at" not in t.c:
        return 0
    q = select(func.count()).where(t.c.closed_at >= since, t.c.closed_at < until)
    return int(conn.execute(q).scalar() or 0)


def task_prices(
    conn: Connection, since: float, classes: dict[str, str], token_usd: float
) -> dict[str, dict[str, float]]:
    """Prices that cleared per GPU class: median tokens per task, and USD per GPU-hour
    (each accepted task's price over the seconds its provider reported)."""
    q = select(db.tasks.c.provider, db.tasks.c.price, db.tasks.c.result_meta).where(
        db.tasks.c.state == TaskState.ACCEPTED.value, db.tasks.c.updated_at >= since
    )
    per_task: dict[str, list[float]] = defaultdict(list)
    per_hour: dict[str, list[float]] = defaultdict(list)
    for provider, price, meta in conn.execute(q):
        cls = classes.get(provider or "", "unknown")
        per_task[cls].append(tokens(price))
        seconds = (meta or {}).get("seconds") if isinstance(meta, dict) else None
        if isinstance(seconds, int | float) and seconds > 0:
            per_hour[cls].append(tokens(price) * token_usd * 3600.0 / seconds)
    return {
        cls: {
            "tasks": len(values),
            "median_tokens_per_task": statistics.median(values),
            "median_usd_per_gpu_hour": (
                statistics.median(per_hour[cls]) if per_hour.get(cls) else 0.0
            ),
        }
        for cls, values in sorted(per_task.items())
    }


def market_prints(conn: Connection, present: set[str], limit: int = 20) -> list[dict[str, Any]]:
    """Recent clearing prints from the market's own table, when it has one."""
    name = next(
        (n for n in sorted(present) if "print" in n or ("clearing" in n and "market" in n)), None
    )
    if name is None:
        return []
    return _latest_rows(conn, name, limit)


def settlement_epochs(conn: Connection, present: set[str], limit: int = 20) -> list[dict[str, Any]]:
    """The latest settlement epochs (with their transaction hashes), when the chain
    tables exist."""
    name = next((n for n in sorted(present) if "epoch" in n), None)
    return [] if name is None else _latest_rows(conn, name, limit)


def _latest_rows(conn: Connection, name: str, limit: int) -> list[dict[str, Any]]:
    t = _reflect(conn, name)
    order = next((t.c[c] for c in ("id", "epoch", "at", "created_at") if c in t.c), None)
    q = select(t).limit(limit)
    if order is not None:
        q = q.order_by(order.desc())
    return [
        {k: v for k, v in row._mapping.items() if not isinstance(v, dict | list | bytes)}
        for row in conn.execute(q)
    ]


# ---- headline -------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """The figures a visitor reads first; money in base units over the last 24 h."""

    at: float
    providers_total: int
    providers_online: int
    gpus_online: int
    gpus_by_class: dict[str, int]
    gpus_by_region: dict[str, int]
    busy: int
    leased: int
    utilization: float
    jobs_total: int
    jobs_completed: int
    jobs_running: int
    jobs_24h: int
    leases_24h: int
    tasks_accepted: int
    volume_24h: int
    fees_24h: int
    burned_24h: int
    minted_24h: int
    provider_income_24h: int
    audits_24h: int
    audit_failures_24h: int
    slashes_24h: int
    sla_breaches_24h: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _job_counts(conn: Connection) -> dict[str, int]:
    q = select(db.jobs.c.state, func.count()).group_by(db.jobs.c.state)
    return {state: n for state, n in conn.execute(q)}


def _count_since(conn: Connection, column: Any, since: float, until: float) -> int:
    q = select(func.count()).where(column >= since, column < until)
    return int(conn.execute(q).scalar() or 0)


def headline(conn: Connection, now: float, online_ttl_s: float) -> Headline:
    """The headline figures as they stand at ``now``."""
    present = optional_tables(conn)
    f = fleet(conn, now, online_ttl_s)
    busy = busy_providers(conn) & set(f.online)
    leased = leased_providers(conn, present) & set(f.online)
    window = flows(conn, now - DAY, now + 1e-6, f.classes)
    tr = trust(conn, now - DAY, now + 1e-6, window.slashes)
    jobs = _job_counts(conn)
    accepted = select(func.count()).where(db.tasks.c.state == TaskState.ACCEPTED.value)
    return Headline(
        at=now,
        providers_total=f.providers_total,
        providers_online=f.providers_online,
        gpus_online=f.gpus_online,
        gpus_by_class=f.gpus_by_class,
        gpus_by_region=f.gpus_by_region,
        busy=len(busy),
        leased=len(leased),
        utilization=len(busy | leased) / f.providers_online if f.providers_online else 0.0,
        jobs_total=sum(jobs.values()),
        jobs_completed=jobs.get(JobState.COMPLETED.value, 0),
        jobs_running=jobs.get(JobState.RUNNING.value, 0) + jobs.get(JobState.FUNDED.value, 0),
        jobs_24h=_count_since(conn, db.jobs.c.created_at, now - DAY, now + 1e-6),
        leases_24h=lease_counts(conn, present, now - DAY, now + 1e-6),
        tasks_accepted=int(conn.execute(accepted).scalar() or 0),
        volume_24h=window.volume,
        fees_24h=window.fees,
        burned_24h=window.burned,
        minted_24h=window.minted,
        provider_income_24h=window.provider_income,
        audits_24h=tr.audits,
        audit_failures_24h=tr.audit_failures,
        slashes_24h=tr.slashes,
        sla_breaches_24h=window.sla_credits,
    )


# ---- series and per-class figures -------------------------------------------------------


def daily(conn: Connection, now: float, days: int = 14) -> list[dict[str, Any]]:
    """One row per day (oldest first, the last ending at ``now``): jobs, leases, volume,
    fees, burned and minted tokens."""
    present = optional_tables(conn)
    classes = {p.address: p.gpu_class for p in conn.execute(select(db.providers))}
    start = now - days * DAY
    buckets: list[list[Any]] = [[] for _ in range(days)]
    for e in _entries(conn, start, now + 1e-6):
        buckets[min(days - 1, int((e.at - start) // DAY))].append(e)
    out = []
    for i, rows in enumerate(buckets):
        lo, hi = start + i * DAY, start + (i + 1) * DAY + (1e-6 if i == days - 1 else 0)
        fl = flows_of(rows, classes)
        out.append(
            {
                "day_start": lo,
                "jobs": _count_since(conn, db.jobs.c.created_at, lo, hi),
                "leases": lease_counts(conn, present, lo, hi),
                "volume": fl.volume,
                "fees": fl.fees,
                "burned": fl.burned,
                "minted": fl.minted,
            }
        )
    return out


def earnings_per_gpu_day(
    conn: Connection, now: float, online_ttl_s: float, token_usd: float
) -> dict[str, dict[str, float]]:
    """Per GPU class: tokens and USD earned per online device over the last 24 h."""
    f = fleet(conn, now, online_ttl_s)
    window = flows(conn, now - DAY, now + 1e-6, f.classes)
    by_class: dict[str, int] = defaultdict(int)
    for who, amount in window.earned_by_provider.items():
        by_class[f.classes.get(who, "unknown")] += amount
    out = {}
    for cls in sorted(set(by_class) | set(f.gpus_by_class)):
        n = f.gpus_by_class.get(cls, 0)
        per = tokens(by_class.get(cls, 0)) / n if n else 0.0
        out[cls] = {"gpus": float(n), "tokens_per_gpu_day": per, "usd_per_gpu_day": per * token_usd}
    return out


def network_figures(
    conn: Connection, now: float, online_ttl_s: float, token_usd: float, period_days: float = 30
) -> NetworkFigures:
    """The live network's ``NetworkFigures`` over the last ``period_days`` days."""
    present = optional_tables(conn)
    f = fleet(conn, now, online_ttl_s)
    since = now - period_days * DAY
    fl = flows(conn, since, now + 1e-6, f.classes)
    tr = trust(conn, since, now + 1e-6, fl.slashes)
    prices = task_prices(conn, since, f.classes, token_usd)
    leases = ended_leases(conn, present, since, now + 1e-6)
    emissions_to_providers = sum(fl.earned_by_provider.values()) - fl.provider_income
    return NetworkFigures(
        gpus_by_class=f.gpus_by_class,
        gpus_by_region=f.gpus_by_region,
        median_price_usd_per_hour={
            c: p["median_usd_per_gpu_hour"]
            for c, p in prices.items()
            if p["median_usd_per_gpu_hour"] > 0
        },
        volume_usd=tokens(fl.volume) * token_usd,
        enterprise_volume_usd=tokens(fl.enterprise_volume) * token_usd,
        sla_leases=max(leases, fl.sla_credits),
        sla_leases_met=max(leases, fl.sla_credits) - fl.sla_credits,
        audits=tr.audits,
        audit_failures=tr.audit_failures,
        provider_income_from_fees_usd=tokens(fl.provider_income) * token_usd,
        provider_income_from_emissions_usd=tokens(max(0, emissions_to_providers)) * token_usd,
        tokens_minted=tokens(fl.minted),
        tokens_burned=tokens(fl.burned),
        period_days=period_days,
    )


# ---- the whole public picture -----------------------------------------------------------

MONEY_FIELDS = (
    "volume_24h",
    "fees_24h",
    "burned_24h",
    "minted_24h",
    "provider_income_24h",
)


def public_headline(h: dict[str, Any]) -> dict[str, Any]:
    """A headline (or a stored sample of one) with money as token display strings."""
    from gpudepin.core.money import format_amount

    return {k: format_amount(int(v)) if k in MONEY_FIELDS else v for k, v in h.items()}


def snapshot(conn: Connection, now: float, online_ttl_s: float, token_usd: float) -> dict[str, Any]:
    """Everything ``GET /v1/stats`` and the page show, JSON-able (money as token strings)."""
    from gpudepin.dashboard import history

    present = optional_tables(conn)
    h = headline(conn, now, online_ttl_s)
    ago = history.near(conn, now - DAY)
    f = fleet(conn, now, online_ttl_s)
    nf = network_figures(conn, now, online_ttl_s, token_usd)
    return {
        "at": now,
        "token_usd": token_usd,
        "headline": public_headline(h.to_dict()),
        "ago_24h": public_headline(ago) if ago else None,
        "regions": f.region_table,
        "prices": task_prices(conn, now - 30 * DAY, f.classes, token_usd),
        "market_prints": market_prints(conn, present),
        "earnings_per_gpu_day": earnings_per_gpu_day(conn, now, online_ttl_s, token_usd),
        "quoted_rtx4090_usd_per_day": list(QUOTED_RTX4090_USD_PER_DAY),
        "settlement_epochs": settlement_epochs(conn, present),
        "has_tables": {
            "leases": "leases" in present,
            "market": any("print" in n or "market" in n for n in present),
            "epochs": any("epoch" in n for n in present),
        },
        "sla": {"leases": nf.sla_leases, "met": nf.sla_leases_met},
        "trust_30d": {"audits": nf.audits, "failures": nf.audit_failures},
        "network_figures": nf.to_dict(),
    }
