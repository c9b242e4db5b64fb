"""Enterprise tier and data residency: the rules of ``core.placement`` and ``core.sla``
applied to SQL rows.

A job's restrictions live in ``job_terms`` (tier, residency, deadline) and, for a
restricted job, the regions it may run in are expanded once at submission into
``job_regions``: the claim query then needs one indexed equality per candidate job.
A provider's enterprise standing (hardware proof, stake, 30-day uptime) is recomputed by
a duty into ``provider_standing``, so a claim reads one row instead of 30 days of
heartbeats.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from gpudepin.coordinator import db, store
from gpudepin.coordinator.tables_enterprise import (
    alive_runs,
    artifacts,
    job_regions,
    job_terms,
    provider_standing,
    shard_holders,
)
from gpudepin.core import ledger
from gpudepin.core.errors import InvalidInput, NoMatch
from gpudepin.core.money import format_amount, parse_amount
from gpudepin.core.placement import (
    REGION_TAGS,
    EnterpriseParams,
    ProviderProfile,
    Residency,
    check_residency,
    enterprise_eligible,
    parse_residency,
)
from gpudepin.core.sla import SlaTerms, deadline_credit, uptime_from_runs

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

TIERS = ("consumer", "enterprise")
HW_PROOF_PASSED = "hardware_proof_passed"
HW_PROOF_FAILED = "hardware_proof_failed"


@dataclass(frozen=True)
class JobTerms:
    """What a buyer asked for beyond the work itself."""

    tier: str = "consumer"
    residency: Residency = field(default_factory=Residency)
    deadline_s: float | None = None

    @property
    def plain(self) -> bool:
        return self.tier == "consumer" and self.residency.unrestricted and self.deadline_s is None


def parse_terms(raw: dict[str, Any] | None, tier: str, deadline_s: float | None) -> JobTerms:
    """Validate the residency, tier and deadline of a job submission."""
    raw = raw or {}
    unknown = set(raw) - {"allow_regions", "deny_regions", "require_tags", "deny_tags"}
    if unknown:
        raise InvalidInput(
            f"residency: unknown field(s) {', '.join(sorted(unknown))}",
            hint="Use allow_regions, deny_regions, require_tags and deny_tags.",
        )
    lists: dict[str, list[str]] = {}
    for key in ("allow_regions", "deny_regions", "require_tags", "deny_tags"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidInput(f"residency.{key}: expected a list of names")
        lists[key] = value
    residency = parse_residency(
        lists["allow_regions"], lists["deny_regions"], lists["require_tags"], lists["deny_tags"]
    )
    if tier not in TIERS:
        raise InvalidInput(f"unknown tier {tier!r}", hint="Use consumer or enterprise.")
    if deadline_s is not None:
        SlaTerms(deadline_s=deadline_s)  # refuses a deadline that is not positive
    return JobTerms(tier, residency, deadline_s)


def allowed_regions(residency: Residency) -> list[str]:
    """Every known region a provider may be in to run work under ``residency``."""
    return sorted(r for r in REGION_TAGS if not check_residency(residency, r))


def enterprise_params(settings: Any) -> EnterpriseParams:
    return EnterpriseParams(
        min_stake=parse_amount(settings.enterprise_min_stake),
        min_uptime=settings.enterprise_min_uptime,
        uptime_window_s=settings.enterprise_window_s,
        require_hardware_proof=settings.enterprise_require_hardware_proof,
    )


# ---- uptime evidence ------------------------------------------------------------------


def note_alive(conn: Connection, provider: str, now: float, max_gap: float) -> None:
    """Extend the provider's current run of heartbeats, or open a new one after a gap."""
    params = {"who": provider, "now": now, "since": now - max_gap}
    if conn.execute(_EXTEND_RUN, params).rowcount == 0:
        conn.execute(insert(alive_runs).values(provider=provider, started_at=now, ended_at=now))


_EXTEND_RUN = (
    update(alive_runs)
    .where(alive_runs.c.provider == bindparam("who"), alive_runs.c.ended_at >= bindparam("since"))
    .values(ended_at=bindparam("now"))
)


# ---- standing -------------------------------------------------------------------------


def _proven(conn: Connection) -> set[str]:
    """Providers whose hardware proof passed.

    The trust layer keeps the verdict in its ``trust`` table; an operator may also record
    a ``hardware_proof_passed`` / ``hardware_proof_failed`` event (e.g. a proof done out of
    band), and the latest of those counts too.
    """
    proven: set[str] = set()
    try:
        from gpudepin.coordinator import tables_verification as tv
    except ImportError:  # the trust layer is optional
        pass
    else:
        q = select(tv.trust.c.address).where(tv.trust.c.hardware_proven.is_(True))
        proven.update(r.address for r in conn.execute(q))
    q = (
        select(db.events.c.actor, db.events.c.kind)
        .where(db.events.c.kind.in_([HW_PROOF_PASSED, HW_PROOF_FAILED]))
        .order_by(db.events.c.id)
    )
    latest: dict[str, str] = {}
    for r in conn.execute(q):
        if r.actor:
            latest[r.actor] = r.kind
    proven.update(a for a, k in latest.items() if k == HW_PROOF_PASSED)
    return proven


def profiles(conn: Connection, settings: Any, now: float) -> list[ProviderProfile]:
    """Every registered provider as placement sees it."""
    params = enterprise_params(settings)
    proven = _proven(conn)
    rows = list(conn.execute(select(db.providers)))
    stakes = store.balances_for(conn, [ledger.stake_account(r.address) for r in rows])
    start = now - params.uptime_window_s
    gap = settings.uptime_max_gap_s
    runs: dict[str, list[tuple[float, float]]] = {}
    a = alive_runs.c
    for run in conn.execute(
        select(a.provider, a.started_at, a.ended_at).where(a.ended_at >= start - gap)
    ):  # every provider's runs in one query: a thousand providers were a thousand queries
        runs.setdefault(run.provider, []).append((run.started_at, run.ended_at))
    out = []
    for r in rows:
        out.append(
            ProviderProfile(
                address=r.address,
                operator=r.operator,
                region=r.region,
                gpu_class=r.gpu_class,
                hardware_proven=r.address in proven,
                stake=stakes[ledger.stake_account(r.address)],
                uptime_30d=uptime_from_runs(runs.get(r.address, []), start, now, gap),
            )
        )
    return out


def save_standing(
    conn: Connection, settings: Any, now: float, found: list[ProviderProfile]
) -> None:
    """Store every provider's enterprise standing from its freshly computed profile."""
    params = enterprise_params(settings)
    conn.execute(delete(provider_standing))
    if found:
        conn.execute(
            insert(provider_standing),
            [
                {
                    "provider": p.address,
                    "hardware_proven": p.hardware_proven,
                    "stake": p.stake,
                    "uptime_30d": p.uptime_30d,
                    "eligible": not enterprise_eligible(p, params),
                    "reasons": enterprise_eligible(p, params),
                    "computed_at": now,
                }
                for p in found
            ],
        )


# ---- jobs -----------------------------------------------------------------------------


def check_placeable(conn: Connection, terms: JobTerms, settings: Any, now: float) -> None:
    """Refuse a restricted job that no registered provider could take, saying why."""
    if terms.residency.unrestricted and terms.tier == "consumer":
        return
    found = profiles(conn, settings, now)
    where = Counter(p.region for p in found)
    places = ", ".join(f"{r} ({n})" for r, n in where.most_common()) or "nowhere yet"
    in_region = [p for p in found if not check_residency(terms.residency, p.region)]
    if not terms.residency.unrestricted and not in_region:
        allowed = ", ".join(allowed_regions(terms.residency)) or "none"
        raise NoMatch(
            f"0 of {len(found)} registered providers are in an allowed region ({allowed}); "
            f"providers are in {places}",
            hint="Widen the allowed regions or tags, or wait for providers there.",
            allowed_regions=allowed_regions(terms.residency),
            provider_regions=dict(where),
        )
    if terms.tier == "enterprise":
        params = enterprise_params(settings)
        refused = {p.address: enterprise_eligible(p, params) for p in in_region}
        if all(refused.values()):
            common = Counter(_gist(r) for rs in refused.values() for r in rs)
            why = "; ".join(f"{n} {reason}" for reason, n in common.most_common(3))
            raise NoMatch(
                f"0 of {len(in_region)} providers in the allowed regions qualify for the "
                f"enterprise tier ({why})",
                hint="Enterprise providers need the hardware proof, "
                f"{format_amount(params.min_stake)} tokens staked and "
                f"{params.min_uptime:.0%} uptime over {params.uptime_window_s / 86400:g} days; "
                "or submit with --tier consumer.",
                refused=refused,
            )


def _gist(reason: str) -> str:
    """A refusal without its numbers, so equal reasons count together."""
    for key in ("hardware proof", "stake", "uptime", "datacenter"):
        if key in reason:
            return {
                "hardware proof": "lack the hardware proof",
                "stake": "stake too little",
                "uptime": "lack the uptime",
                "datacenter": "lack a datacenter GPU",
            }[key]
    return reason


def attach_terms(conn: Connection, job_id: str, terms: JobTerms, now: float) -> None:
    """Store a job's terms in the transaction that creates it, before anyone can claim."""
    if terms.plain:
        return
    restricted = not terms.residency.unrestricted
    conn.execute(
        insert(job_terms).values(
            job_id=job_id,
            tier=terms.tier,
            residency=residency_dict(terms.residency),
            restricted=restricted,
            deadline_s=terms.deadline_s,
        )
    )
    if restricted:
        regions = allowed_regions(terms.residency)
        if regions:
            conn.execute(insert(job_regions), [{"job_id": job_id, "region": r} for r in regions])
    store.record(
        conn,
        now,
        "job_terms",
        job_id=job_id,
        tier=terms.tier,
        residency=residency_dict(terms.residency),
        deadline_s=terms.deadline_s,
    )


def residency_dict(res: Residency) -> dict[str, list[str]]:
    return {
        "allow_regions": sorted(res.allow_regions),
        "deny_regions": sorted(res.deny_regions),
        "require_tags": sorted(res.require_tags),
        "deny_tags": sorted(res.deny_tags),
    }


def claimable_by(job_id: Any, provider: str) -> ColumnElement[bool]:
    """SQL condition: the job whose id is ``job_id`` lets ``provider`` run its tasks."""
    region = (
        select(db.providers.c.region).where(db.providers.c.address == provider).scalar_subquery()
    )
    in_region = exists().where(
        job_regions.c.job_id == job_terms.c.job_id, job_regions.c.region == region
    )
    eligible = exists().where(
        provider_standing.c.provider == provider, provider_standing.c.eligible.is_(True)
    )
    blocked = exists().where(
        job_terms.c.job_id == job_id,
        or_(
            and_(job_terms.c.restricted.is_(True), ~in_region),
            and_(job_terms.c.tier == "enterprise", ~eligible),
        ),
    )
    return ~blocked


def terms_of(conn: Connection, job_id: str) -> Any | None:
    return conn.execute(select(job_terms).where(job_terms.c.job_id == job_id)).first()


# ---- deadline SLA ---------------------------------------------------------------------


def _paid_per_provider(conn: Connection, job: Any) -> dict[str, int]:
    """What the buyer paid for each provider's accepted tasks (the fee a credit is based on)."""
    q = select(db.tasks.c.provider, db.tasks.c.price).where(
        db.tasks.c.job_id == job.id, db.tasks.c.state == "accepted"
    )
    out: dict[str, int] = {}
    for r in conn.execute(q):
        out[r.provider] = out.get(r.provider, 0) + r.price
    return out


def settle_deadlines(conn: Connection, now: float) -> int:
    """Credit buyers of completed jobs that missed their deadline, from the providers' stake.

    Each provider pays its share of the credit in proportion to what it earned from the
    job, so the one who did most of a late job pays most. Settled once per job.
    """
    q = (
        select(job_terms, db.jobs)
        .join(db.jobs, db.jobs.c.id == job_terms.c.job_id)
        .where(
            job_terms.c.deadline_s.is_not(None),
            job_terms.c.sla_settled_at.is_(None),
            db.jobs.c.state == "completed",
        )
    )
    settled = 0
    for row in list(conn.execute(q)):
        job = db_row_job(conn, row.job_id)
        paid = _paid_per_provider(conn, job)
        fee = sum(paid.values())
        terms = SlaTerms(deadline_s=row.deadline_s)
        owed = deadline_credit(fee, job.created_at, job.updated_at, terms)
        credited = 0
        if owed > 0:
            for provider, earned in sorted(paid.items()):
                share = owed * earned // fee if fee else 0
                if share <= 0:
                    continue
                acc = [ledger.stake_account(provider), ledger.unbonding_account(provider)]
                txn = ledger.sla_credit_from_stake(
                    store.lock_balances(conn, acc), provider, job.buyer, share, ref=job.id
                )
                store.apply(conn, txn, now)
                got = -sum(p.amount for p in txn.postings if p.amount < 0) if txn else 0
                credited += got
                store.record(
                    conn,
                    now,
                    "sla_credit",
                    job_id=job.id,
                    actor=provider,
                    owed=str(share),
                    paid=str(got),
                    late_s=round(job.updated_at - job.created_at - row.deadline_s, 3),
                )
        res = conn.execute(
            update(job_terms)
            .where(job_terms.c.job_id == row.job_id, job_terms.c.sla_settled_at.is_(None))
            .values(sla_settled_at=now, sla_credit=credited)
        )
        settled += res.rowcount or 0
    return settled


def db_row_job(conn: Connection, job_id: str) -> Any:
    return conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).one()


# ---- duty -----------------------------------------------------------------------------


def sla_duty(rt: Runtime) -> None:
    """Refresh providers' standing when it is stale; settle finished jobs' deadline SLAs."""
    now = rt.clock()
    with rt.reader.connect() as conn:
        last = conn.execute(select(func.max(provider_standing.c.computed_at))).scalar()
    if last is None or now - last >= rt.settings.standing_refresh_s:
        with rt.reader.connect() as conn:  # computed without holding the writer
            found = profiles(conn, rt.settings, now)
        with rt.engine.begin() as conn:
            save_standing(conn, rt.settings, now, found)
    with rt.engine.begin() as conn:
        settle_deadlines(conn, now)


# ---- audit ----------------------------------------------------------------------------


def _storage_of(conn: Connection, sha: str | None) -> dict[str, Any] | None:
    """Where a file with this hash is kept: the coordinator's database (a small result
    handed in inline), its blob store, or erasure shards."""
    if sha is None:
        return None
    art = conn.execute(select(artifacts).where(artifacts.c.sha256 == sha)).first()
    if art is None:
        kept = conn.execute(select(db.small_blobs.c.sha256).where(db.small_blobs.c.sha256 == sha))
        store = "coordinator-database" if kept.first() else "coordinator-blobs"
        return {"sha256": sha, "store": store}
    holders = conn.execute(
        select(shard_holders, db.providers.c.region, db.providers.c.operator)
        .join(db.providers, db.providers.c.address == shard_holders.c.provider, isouter=True)
        .where(shard_holders.c.artifact == sha)
        .order_by(shard_holders.c.idx)
    )
    return {
        "sha256": sha,
        "store": "erasure-shards",
        "k": art.k,
        "n": art.n,
        "size": art.size,
        "shards": [
            {
                "index": h.idx,
                "sha256": h.sha256,
                "provider": h.provider,
                "region": h.region,
                "operator": h.operator,
                "state": h.state,
            }
            for h in holders
        ],
        "durability": art.manifest.get("durability"),
    }


def audit(conn: Connection, job: Any) -> dict[str, Any]:
    """Who ran every task of ``job``, where, on what hardware, when, and where its data is."""
    providers = {p.address: p for p in conn.execute(select(db.providers))}
    events = list(
        conn.execute(select(db.events).where(db.events.c.job_id == job.id).order_by(db.events.c.id))
    )
    attempts: dict[str, list[dict[str, Any]]] = {}
    open_attempt: dict[tuple[str, str], dict[str, Any]] = {}
    ends = {
        "task_submitted": "submitted",
        "task_accepted": "accepted",
        "task_rejected": "rejected",
        "task_expired": "expired",
        "task_failed": "failed",
        "copy_cancelled": "cancelled",
        "copy_expired": "expired",
    }
    for e in events:
        if e.task_id is None or e.actor is None:
            continue
        key = (e.task_id, e.actor)
        if e.kind in ("task_assigned", "copy_assigned"):
            p = providers.get(e.actor)
            attempt = {
                "provider": e.actor,
                "region": p.region if p else None,
                "operator": p.operator if p else None,
                "gpu_class": p.gpu_class if p else None,
                "hardware": p.hardware if p else None,
                "speculative": e.kind == "copy_assigned",
                "assigned_at": e.at,
                "ended_at": None,
                "outcome": "running",
            }
            attempts.setdefault(e.task_id, []).append(attempt)
            open_attempt[key] = attempt
        elif e.kind in ends and key in open_attempt:
            attempt = open_attempt[key]
            attempt["outcome"] = ends[e.kind]
            attempt["ended_at"] = e.at
            if e.kind == "task_submitted":
                attempt["result_sha256"] = e.detail.get("sha256")
                attempt["seconds"] = e.detail.get("seconds")
            if e.kind != "task_submitted":
                open_attempt.pop(key)
    tasks = []
    for t in conn.execute(
        select(db.tasks).where(db.tasks.c.job_id == job.id).order_by(db.tasks.c.idx)
    ):
        tasks.append(
            {
                "id": t.id,
                "label": t.label,
                "state": t.state,
                "provider": t.provider,
                "result": _storage_of(conn, t.result_sha256),
                "attempts": attempts.get(t.id, []),
            }
        )
    terms = terms_of(conn, job.id)
    credits = [
        {"at": e.at, "provider": e.actor, "owed": e.detail["owed"], "paid": e.detail["paid"]}
        for e in events
        if e.kind == "sla_credit"
    ]
    return {
        "job_id": job.id,
        "kind": job.kind,
        "state": job.state,
        "buyer": job.buyer,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "tier": terms.tier if terms else "consumer",
        "residency": terms.residency if terms else residency_dict(Residency()),
        "deadline_s": terms.deadline_s if terms else None,
        "sla_credits": credits,
        "inputs": {name: _storage_of(conn, sha) for name, sha in (job.inputs or {}).items()},
        "outputs": [
            {"name": o["name"], **(_storage_of(conn, o["sha256"]) or {})} for o in job.outputs or []
        ],
        "tasks": tasks,
    }
