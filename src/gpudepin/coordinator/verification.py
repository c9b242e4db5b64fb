"""The trust layer applied to SQL rows: hold-back, audits, adjudication, stake, reputation.

The rules are ``gpudepin.core.verification``'s; this module stores their inputs and
outcomes. Every accepted result opens a *case*: its pay goes to ``held:`` and a duty
draws (seeded by the settings and the task id) whether another provider re-runs it.
Checks reach auditors through the normal poll; once they are in, ``decide`` compares
the results with the workload's own ``compare`` and lets ``adjudicate`` rule. A proven
fault reverses the held payment into the job's escrow, slashes the stake, requeues the
task and may ban the address. Held pay is released when the challenge window closes.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    exists,
    func,
    insert,
    select,
    update,
)

from gpudepin.coordinator import db, service, store, verification_sampling
from gpudepin.coordinator import tables_verification as tv
from gpudepin.core import ledger
from gpudepin.core import verification as V
from gpudepin.core.errors import Forbidden, NotFound
from gpudepin.core.jobs import TERMINAL_JOB_STATES, JobState, TaskState, task_transition
from gpudepin.core.money import fee_of
from gpudepin.settings import CoordinatorSettings

COORDINATOR = "coordinator"  # the party name when the coordinator re-runs a task itself
# a job waits for these before merging; a case waits for an auditor at most
# ``audit_wait_s``, then turns 'unchecked' (still audited when one appears, not blocking)
OPEN_CASES = ("unplanned", "auditing", "waiting", "disputed")  # disputed: coordinator/disputes.py
CHECK_PREFIX = "v"


def params_of(settings: CoordinatorSettings) -> V.VerificationParams:
    """The policy's parameters with this coordinator's windows and rates."""
    return replace(
        V.DEFAULT_PARAMS,
        hold_window_s=settings.hold_window_s,
        unbonding_s=settings.unbonding_s,
        known_answer_rate=settings.known_answer_rate,
    )


def rng_for(settings: CoordinatorSettings, *parts: object) -> random.Random:
    """A generator seeded by the settings and what is decided, so decisions replay."""
    return random.Random(":".join([str(settings.verification_seed), *map(str, parts)]))


def is_check_id(task_id: str) -> bool:
    """Whether a task id the agents use names a verification check, not a job's task."""
    return task_id.startswith(CHECK_PREFIX)


# ---- provider records -----------------------------------------------------------------


_TRUST = select(tv.trust).where(tv.trust.c.address == bindparam("address"))


def trust_row(conn: Connection, address: str) -> Any:
    return conn.execute(_TRUST, {"address": address}).first()


def _ensure_trust(conn: Connection, address: str, now: float) -> Any:
    row = trust_row(conn, address)
    if row is None:
        conn.execute(
            insert(tv.trust).values(
                address=address,
                verified=0,
                streak=0,
                faults=0,
                auditor_faults=0,
                banned=False,
                hardware_proven=False,
                updated_at=now,
            )
        )
        row = trust_row(conn, address)
    return row


def record_of(conn: Connection, provider: Any) -> V.ProviderRecord:
    """The core's view of a provider row (its trust row may not exist yet)."""
    t = trust_row(conn, provider.address)
    return V.ProviderRecord(
        address=provider.address,
        operator=provider.operator,
        region=provider.region,
        device_class=provider.gpu_class,
        verified=t.verified if t else 0,
        streak=t.streak if t else 0,
        faults=t.faults if t else 0,
        auditor_faults=t.auditor_faults if t else 0,
    )


def _save_record(conn: Connection, rec: V.ProviderRecord, now: float, **extra: Any) -> None:
    _ensure_trust(conn, rec.address, now)
    conn.execute(
        update(tv.trust)
        .where(tv.trust.c.address == rec.address)
        .values(
            verified=rec.verified,
            streak=rec.streak,
            faults=rec.faults,
            auditor_faults=rec.auditor_faults,
            updated_at=now,
            **extra,
        )
    )


def require_not_banned(conn: Connection, address: str) -> None:
    """Forbidden for an address banned after repeated proven faults."""
    t = trust_row(conn, address)
    if t is not None and t.banned:
        raise Forbidden(
            f"address {address} is banned from this network: {t.ban_reason}",
            hint="Bans follow repeated proven faults; see GET /v1/providers/ADDRESS/reputation.",
        )


def banned(address: Any) -> ColumnElement[bool]:
    """SQL: ``address`` (a value or a bind parameter) is banned."""
    return exists().where(tv.trust.c.address == address, tv.trust.c.banned.is_(True))


def stake_of(conn: Connection, address: str) -> dict[str, int]:
    accts = [
        ledger.stake_account(address),
        ledger.unbonding_account(address),
        ledger.held_account(address),
    ]
    b = store.balances_for(conn, accts)
    return {"staked": b[accts[0]], "unbonding": b[accts[1]], "held": b[accts[2]]}


def trust_profile(conn: Connection, address: str, params: V.VerificationParams) -> dict[str, Any]:
    """What other domains read: stake, hardware proof, reputation and ban state.

    The enterprise tier fills ``ProviderProfile.stake`` and ``hardware_proven`` from this;
    the market's score reads ``reputation``.
    """
    prov = _provider(conn, address)
    rec = record_of(conn, prov)
    t = trust_row(conn, address)
    money = stake_of(conn, address)
    return {
        "address": address,
        "verified": rec.verified,
        "streak": rec.streak,
        "faults": rec.faults,
        "auditor_faults": rec.auditor_faults,
        "reputation": round(V.reputation(rec, params), 4),
        "audit_rate": round(V.audit_rate(rec, money["staked"], params), 4),
        "banned": bool(t.banned) if t else False,
        "ban_reason": t.ban_reason if t else None,
        "hardware_proven": bool(t.hardware_proven) if t else False,
        "proven_class": t.proven_class if t else None,
        "gpu_class": prov.gpu_class,
        **money,
    }


def _provider(conn: Connection, address: str) -> Any:
    row = conn.execute(select(db.providers).where(db.providers.c.address == address)).first()
    if row is None:
        raise NotFound(f"no provider {address}", hint="See `gpudepin providers list`.")
    return row


def required_stake(value: int, params: V.VerificationParams = V.DEFAULT_PARAMS) -> int:
    """The stake needed to bid ``value`` per task (0 up to the unstaked limit)."""
    return V.min_stake_for_bid(value, params)


def check_bid_stake(
    conn: Connection, address: str, value: int, params: V.VerificationParams = V.DEFAULT_PARAMS
) -> None:
    """Forbidden unless ``address`` has staked enough to bid ``value`` per task (for the
    market) — and never for a banned address."""
    require_not_banned(conn, address)
    need = required_stake(value, params)
    have = stake_of(conn, address)["staked"]
    if have < need:
        raise Forbidden(
            f"bidding {value} base units per task needs a stake of {need}, you have {have}",
            hint="Stake with `gpudepin provider stake AMOUNT`.",
        )


# ---- stake ----------------------------------------------------------------------------


def stake(conn: Connection, address: str, amount: int, now: float) -> None:
    require_not_banned(conn, address)
    acct = ledger.available_account(address)
    store.apply(conn, ledger.stake(store.lock_balances(conn, [acct]), address, amount), now)
    store.record(conn, now, "stake", actor=address, amount=str(amount))


def unstake(conn: Connection, address: str, amount: int, now: float, unbonding_s: float) -> float:
    """Start unbonding ``amount``; returns when it will be released (still slashable)."""
    acct = ledger.stake_account(address)
    store.apply(conn, ledger.unbond(store.lock_balances(conn, [acct]), address, amount), now)
    release_at = now + unbonding_s
    conn.execute(
        insert(tv.unbondings).values(
            address=address,
            amount=amount,
            requested_at=now,
            release_at=release_at,
            released=False,
        )
    )
    store.record(conn, now, "unbond", actor=address, amount=str(amount), release_at=release_at)
    return release_at


def release_unbonded(conn: Connection, now: float) -> int:
    """Return stake whose unbonding delay passed (less whatever was slashed meanwhile)."""
    due = list(
        conn.execute(
            select(tv.unbondings).where(
                tv.unbondings.c.released.is_(False), tv.unbondings.c.release_at <= now
            )
        )
    )
    for row in due:
        acct = ledger.unbonding_account(row.address)
        have = store.lock_balances(conn, [acct]).get(acct, 0)
        amount = min(have, row.amount)
        if amount > 0:
            store.apply(conn, ledger.release_stake({acct: have}, row.address, amount), now)
        conn.execute(
            update(tv.unbondings).where(tv.unbondings.c.id == row.id).values(released=True)
        )
        store.record(conn, now, "stake_released", actor=row.address, amount=str(amount))
    return len(due)


# ---- hold-back ------------------------------------------------------------------------


def on_accepted(
    conn: Connection,
    *,
    job: Any,
    provider: str,
    accepted: list[tuple[Any, str, str]],
    fee_bps: int,
    now: float,
) -> ledger.Transaction:
    """Open hold-back payouts and verification cases for accepted results of one job,
    ``(task, sha256, signature)`` each, one statement per table for the lot; returns
    the payment (one ledger transaction) for the caller to ``store.post`` last.

    Last, just before the commit: every result of a job pays from the same escrow (and
    every result into the one fees account), so on PostgreSQL a transaction holding
    those rows across its other statements made the results of a job wait in line for
    one another. The escrow is read unlocked here for the clear error; ``store.post``
    checks again as it writes.
    """
    tasks = [task for task, _, _ in accepted]
    fees = [fee_of(task.price, fee_bps) for task in tasks]
    conn.execute(
        insert(tv.payouts),
        [
            {
                "task_id": task.id,
                "job_id": job.id,
                "provider": provider,
                "buyer": job.buyer,
                "net": task.price - fee,
                "fee": fee,
                "earned_at": now,
                "state": "held",
            }
            for task, fee in zip(tasks, fees, strict=True)
        ],
    )
    # the n-th result of a task gets case n: ids (and the audit draws seeded by them)
    # replay identically
    rounds: dict[str, int] = dict(
        conn.execute(_CASE_ROUNDS, {"ids": [task.id for task in tasks]}).tuples().all()
    )
    conn.execute(
        insert(tv.cases),
        [
            {
                "id": f"c{task.id}-{rounds.get(task.id, 0) + 1}",
                "task_id": task.id,
                "job_id": job.id,
                "provider": provider,
                "result_sha256": sha256,
                "signature": signature,
                "state": "unplanned",
                "created_at": now,
            }
            for task, sha256, signature in accepted
        ],
    )
    return ledger.pay_many_into_hold(
        store.balances_for(conn, [ledger.escrow_account(job.buyer, job.id)]),
        job.buyer,
        job.id,
        provider,
        [task.price for task in tasks],
        fee_bps,
        memo="task " + ", ".join(task.id for task in tasks),
    )


# built once, as every statement of a result's path (see results.py)
_CASE_ROUNDS = (
    select(tv.cases.c.task_id, func.count())
    .where(tv.cases.c.task_id.in_(bindparam("ids", expanding=True)))
    .group_by(tv.cases.c.task_id)
)


def release_due(conn: Connection, now: float, window: float) -> int:
    """Release held pay whose challenge window passed, unless its case is still open."""
    due = list(
        conn.execute(
            select(tv.payouts).where(
                tv.payouts.c.state == "held", tv.payouts.c.earned_at + window <= now
            )
        )
    )
    released = 0
    for p in due:
        case = _case_for(conn, p.task_id, p.provider)
        if case is not None and case.state in OPEN_CASES:
            continue
        if case is not None and case.state == "unchecked":
            conn.execute(
                update(tv.cases)
                .where(tv.cases.c.id == case.id)
                .values(state="expired", decided_at=now)
            )
        if p.net > 0:
            acct = ledger.held_account(p.provider)
            bal = store.lock_balances(conn, [acct])
            store.apply(conn, ledger.release_held(bal, p.provider, p.net, ref=p.task_id), now)
        conn.execute(
            update(tv.payouts)
            .where(tv.payouts.c.id == p.id)
            .values(state="released", settled_at=now)
        )
        store.record(
            conn, now, "payment_released", job_id=p.job_id, task_id=p.task_id, actor=p.provider
        )
        released += 1
    return released


def _case_for(conn: Connection, task_id: str, provider: str) -> Any:
    q = (
        select(tv.cases)
        .where(tv.cases.c.task_id == task_id, tv.cases.c.provider == provider)
        .order_by(tv.cases.c.created_at.desc())
    )
    return conn.execute(q).first()


def claimable_by(task_id: Any, provider: str) -> Any:
    """A SQL condition for the claim query: never hand a provider a task it was proven
    to have cheated on."""
    refused = select(tv.cases.c.task_id).where(
        tv.cases.c.provider == provider, tv.cases.c.state == "rejected"
    )
    return task_id.not_in(refused)


def blocking_jobs() -> Any:
    """Job ids whose verification is still open: their outputs must not merge yet."""
    return select(tv.cases.c.job_id).where(tv.cases.c.state.in_(OPEN_CASES))


# ---- planning audits ------------------------------------------------------------------


def _candidates(conn: Connection, now: float, online_s: float) -> list[V.ProviderRecord]:
    """The records of every online, unbanned provider, read in one query (the pass runs
    in a write transaction, so a query per provider held every writer back)."""
    t = tv.trust
    q = (
        select(db.providers, t.c.verified, t.c.streak, t.c.faults, t.c.auditor_faults)
        .outerjoin(t, t.c.address == db.providers.c.address)
        .where(db.providers.c.last_seen >= now - online_s, t.c.banned.is_not(True))
    )
    return [
        V.ProviderRecord(
            address=r.address,
            operator=r.operator,
            region=r.region,
            device_class=r.gpu_class,
            verified=r.verified or 0,
            streak=r.streak or 0,
            faults=r.faults or 0,
            auditor_faults=r.auditor_faults or 0,
        )
        for r in conn.execute(q)
    ]


def _audit_spec(job: Any, task: Any, rng: random.Random) -> tuple[dict[str, Any], str]:
    """What the checkers re-run: a random tile of a single rendered frame, a sample of an
    inference task's rows, else the task."""
    sampled = verification_sampling.audit_spec(job, task, rng)
    if sampled is not None:
        return sampled
    spec = dict(task.spec)
    if job.kind == "render" and len(spec.get("frames", [])) == 1 and "width" in job.spec:
        from gpudepin.workloads.render import pick_tile

        box = pick_tile(job.spec, rng)
        spec["tile"] = list(box)
        return spec, f"tile {box} of frame {spec['frames'][0]} (border render)"
    if job.kind == "train":  # replay one segment; a mismatch is bisected (disputes_duty.py)
        from gpudepin.workloads.training import pick_segment, segment_task

        start, end = pick_segment(job.spec, rng)
        return segment_task(start, end), f"steps {start}-{end} replayed from step {start}"
    return spec, "the whole task"


def plan_cases(conn: Connection, settings: CoordinatorSettings, now: float) -> int:
    """Draw the audit decision of every unplanned case; find auditors for waiting ones."""
    params = params_of(settings)
    unplanned: list[Any] = []
    if settings.audits:
        unplanned = conn.execute(select(tv.cases).where(tv.cases.c.state == "unplanned")).all()
    else:  # nothing is drawn: every new case passes, in one statement
        conn.execute(update(tv.cases).where(tv.cases.c.state == "unplanned").values(state="passed"))
    searching = conn.execute(
        select(tv.cases.c.id).where(tv.cases.c.state.in_(["waiting", "unchecked"])).limit(1)
    ).first()
    needs_auditors = unplanned or searching is not None
    records = _candidates(conn, now, settings.assignment_ttl_s) if needs_auditors else []
    planned = 0
    for case in unplanned:
        task = service.get_task(conn, case.task_id)
        job = service.get_job(conn, case.job_id)
        prov = _provider(conn, case.provider)
        rng = rng_for(settings, case.id)
        check = None
        if settings.audits:
            check = V.plan_verification(
                case.id,
                record_of(conn, prov),
                records,
                rng,
                params,
                stake=stake_of(conn, case.provider)["staked"],
                reward=task.price,
            )
        if check is None:
            conn.execute(update(tv.cases).where(tv.cases.c.id == case.id).values(state="passed"))
            continue
        spec, rerun = _audit_spec(job, task, rng)
        conn.execute(
            update(tv.cases)
            .where(tv.cases.c.id == case.id)
            .values(state="waiting", rate=check.rate, spec=spec, rerun=rerun)
        )
        store.record(
            conn,
            now,
            "audit_planned",
            job_id=job.id,
            task_id=task.id,
            actor=case.provider,
            rate=round(check.rate, 4),
            rerun=rerun,
        )
        if check.auditor is not None:
            _assign(conn, case.id, check.auditor, "auditor", now, settings)
            _maybe_known_answer(conn, settings, check.auditor, case.id, rng, now)
        planned += 1
    # a case with no answer in hand stops holding its job back once it waited
    # ``audit_wait_s`` for an auditor since it was planned or lost its last checker (one
    # that went silent is not drawn again, and in a small network nobody else may be
    # eligible): it turns 'unchecked' and is still audited if one appears. A case with an
    # answer in hand (a mismatch waiting for a referee) blocks until it is decided.
    answered = select(tv.checks.c.case_id).where(tv.checks.c.state == "done")
    last_lost = (
        select(func.max(tv.checks.c.updated_at))
        .where(tv.checks.c.case_id == tv.cases.c.id)
        .scalar_subquery()
    )
    conn.execute(
        update(tv.cases)
        .where(
            tv.cases.c.state == "waiting",
            func.coalesce(last_lost, tv.cases.c.created_at) <= now - settings.audit_wait_s,
            tv.cases.c.id.not_in(answered),
        )
        .values(state="unchecked")
    )
    looking = select(tv.cases).where(tv.cases.c.state.in_(["waiting", "unchecked"]))
    for case in conn.execute(looking).all():
        prov = _provider(conn, case.provider)
        checks = _checks(conn, case.id)
        used = [c.checker for c in checks if c.state != "withdrawn"]
        # drawn anew after each check, withdrawn ones too: a checker that keeps missing
        # its checks is not simply drawn again
        rng = rng_for(settings, case.id, len(checks))
        pick = V.choose_auditor(record_of(conn, prov), records, rng, params, used)
        if pick is not None:
            role = (
                "referee" if any(c.state == "done" for c in _checks(conn, case.id)) else "auditor"
            )
            _assign(conn, case.id, pick.address, role, now, settings)
    return planned


def _assign(
    conn: Connection,
    case_id: str,
    checker: str,
    role: str,
    now: float,
    settings: CoordinatorSettings,
) -> None:
    conn.execute(
        insert(tv.checks).values(
            id=f"{CHECK_PREFIX}{secrets.token_hex(8)}",
            case_id=case_id,
            role=role,
            checker=checker,
            state="assigned",
            # a busy auditor picks the check up after its current task; one that never
            # does loses it to another
            deadline=now + max(3 * settings.assignment_ttl_s, settings.audit_wait_s),
            created_at=now,
            updated_at=now,
        )
    )
    if role != "known_answer":
        conn.execute(update(tv.cases).where(tv.cases.c.id == case_id).values(state="auditing"))


def _maybe_known_answer(
    conn: Connection,
    settings: CoordinatorSettings,
    auditor: str,
    case_id: str,
    rng: random.Random,
    now: float,
) -> None:
    """Now and then also send the auditor a task whose answer two parties already agreed on."""
    if not V.should_inject_known_answer(rng, settings.known_answer_rate):
        return
    q = (
        select(tv.cases.c.id)
        .where(
            tv.cases.c.state == "accepted",
            tv.cases.c.provider != auditor,
            tv.cases.c.id != case_id,
        )
        .order_by(tv.cases.c.decided_at.desc())
        .limit(20)
    )
    known = [r.id for r in conn.execute(q)]
    if known:
        _assign(conn, known[rng.randrange(len(known))], auditor, "known_answer", now, settings)


def _checks(conn: Connection, case_id: str) -> list[Any]:
    q = select(tv.checks).where(tv.checks.c.case_id == case_id).order_by(tv.checks.c.created_at)
    return list(conn.execute(q))


# ---- checks through the poll ----------------------------------------------------------


def claim_check(conn: Connection, provider: str, now: float, ttl: float) -> dict[str, Any] | None:
    """The next check assigned to ``provider``, shaped like a task for the agent."""
    q = (
        select(tv.checks)
        .where(tv.checks.c.checker == provider, tv.checks.c.state == "assigned")
        .order_by(tv.checks.c.created_at)
    )
    chk = conn.execute(q.limit(1)).first()
    if chk is None:
        return None
    res = conn.execute(
        update(tv.checks)
        .where(tv.checks.c.id == chk.id, tv.checks.c.state == "assigned")
        .values(state="running", deadline=now + ttl, updated_at=now)
    )
    if res.rowcount != 1:
        return None
    case = conn.execute(select(tv.cases).where(tv.cases.c.id == chk.case_id)).one()
    task = service.get_task(conn, case.task_id)
    job = service.get_job(conn, case.job_id)
    store.record(
        conn, now, "check_assigned", job_id=job.id, task_id=task.id, actor=provider, role=chk.role
    )
    return {
        "id": chk.id,
        "job_id": job.id,
        "kind": job.kind,
        "label": f"check of {task.label}",
        "job_spec": job.spec,
        "task_spec": case.spec,
        "inputs": job.inputs,
        "deadline": now + ttl,
        "check": True,
    }


def running_check(conn: Connection, check_id: str, provider: str) -> tuple[Any, Any]:
    """The check and its job, if ``provider`` runs it now; Forbidden otherwise."""
    chk = conn.execute(select(tv.checks).where(tv.checks.c.id == check_id)).first()
    if chk is None or chk.checker != provider or chk.state != "running":
        raise Forbidden(
            f"check {check_id} is not assigned to you",
            hint="Its deadline may have passed and it went to another provider.",
        )
    case = conn.execute(select(tv.cases).where(tv.cases.c.id == chk.case_id)).one()
    return chk, service.get_job(conn, case.job_id)


def submit_check(
    conn: Connection, check_id: str, provider: str, sha256: str, signature: str, now: float
) -> str:
    """Store a checker's result; the verification duty compares and decides."""
    _chk, job = running_check(conn, check_id, provider)
    conn.execute(
        update(tv.checks)
        .where(tv.checks.c.id == check_id)
        .values(state="done", result_sha256=sha256, signature=signature, updated_at=now)
    )
    store.record(
        conn, now, "check_submitted", job_id=job.id, actor=provider, check=check_id, sha256=sha256
    )
    return "submitted"


def fail_check(conn: Connection, check_id: str, provider: str, reason: str, now: float) -> str:
    """A checker could not run its check: it goes to somebody else."""
    chk, _job = running_check(conn, check_id, provider)
    _expire_check(conn, chk, now, reason)
    return "expired"


_EXTEND_CHECKS = (
    update(tv.checks)
    .where(tv.checks.c.checker == bindparam("who"), tv.checks.c.state == "running")
    .values(deadline=bindparam("deadline"))
)
_EXTEND_NAMED_CHECKS = _EXTEND_CHECKS.where(tv.checks.c.id.in_(bindparam("ids", expanding=True)))


def extend_checks(
    conn: Connection, provider: str, now: float, ttl: float, ids: list[str] | None = None
) -> None:
    """Heartbeats keep a running check alive, like a task: every one ``provider`` runs,
    or those of ``ids``."""
    params = {"who": provider, "deadline": now + ttl}
    if ids is None:
        conn.execute(_EXTEND_CHECKS, params)
    else:
        conn.execute(_EXTEND_NAMED_CHECKS, {**params, "ids": ids})


def _expire_check(conn: Connection, chk: Any, now: float, why: str) -> None:
    # a check its checker never picked up (the coordinator was down, say) is withdrawn,
    # not held against it: the planner may give that checker the case again, and where
    # it is the only one eligible, the job would otherwise wait for an audit forever
    state = "withdrawn" if chk.state == "assigned" else "expired"
    conn.execute(
        update(tv.checks).where(tv.checks.c.id == chk.id).values(state=state, updated_at=now)
    )
    if chk.role != "known_answer":
        # back to waiting: the planner finds another checker, excluding this one
        conn.execute(
            update(tv.cases)
            .where(tv.cases.c.id == chk.case_id, tv.cases.c.state == "auditing")
            .values(state="waiting")
        )
    store.record(conn, now, "check_expired", actor=chk.checker, check=chk.id, reason=why)


def expire_checks(conn: Connection, now: float) -> int:
    q = select(tv.checks).where(
        tv.checks.c.state.in_(["assigned", "running"]), tv.checks.c.deadline < now
    )
    rows = list(conn.execute(q))
    for chk in rows:
        _expire_check(conn, chk, now, "deadline passed")
    return len(rows)


# ---- deciding -------------------------------------------------------------------------


def ready_cases(conn: Connection) -> list[str]:
    """Cases whose every live check is in (at least one), ready for a decision."""
    out = []
    for case in conn.execute(select(tv.cases).where(tv.cases.c.state == "auditing")).all():
        live = [
            c
            for c in _checks(conn, case.id)
            if c.role != "known_answer" and c.state in ("assigned", "running", "done")
        ]
        if live and all(c.state == "done" for c in live):
            out.append(case.id)
    return out


def known_answers_done(conn: Connection) -> list[Any]:
    q = select(tv.checks).where(tv.checks.c.role == "known_answer", tv.checks.c.state == "done")
    return list(conn.execute(q))


def case_inputs(conn: Connection, case_id: str) -> tuple[Any, Any, list[Any]]:
    case = conn.execute(select(tv.cases).where(tv.cases.c.id == case_id)).one()
    job = service.get_job(conn, case.job_id)
    done = [c for c in _checks(conn, case_id) if c.role != "known_answer" and c.state == "done"]
    return case, job, done


def apply_decision(
    conn: Connection,
    settings: CoordinatorSettings,
    case_id: str,
    decision: V.Decision,
    details: dict[str, str],
    now: float,
) -> str:
    """Carry out ``adjudicate``'s ruling on a case: pay, reverse, slash, requeue, record."""
    params = params_of(settings)
    case, job, done = case_inputs(conn, case_id)
    if case.state != "auditing":
        return str(case.state)
    hashes = {case.provider: case.result_sha256} | {c.checker: c.result_sha256 for c in done}
    sigs = {case.provider: case.signature} | {
        c.checker: c.signature or "" for c in done if c.signature
    }
    evidence = V.Evidence(
        task_ref=case.task_id,
        provider=case.provider,
        checkers=tuple(c.checker for c in done),
        verdict=decision.verdict,
        reason=decision.reason,
        rerun=case.rerun or "",
        output_hashes=hashes,
        commitments={"compare": "; ".join(f"{k}: {v}" for k, v in details.items())},
        receipt_signatures=sigs,
        faulty=decision.faulty,
        decided_at=now,
    ).to_json()
    if decision.verdict is V.Verdict.ESCALATE:
        conn.execute(
            update(tv.cases)
            .where(tv.cases.c.id == case_id)
            .values(state="waiting", evidence=evidence)
        )
        store.record(
            conn,
            now,
            "audit_escalated",
            job_id=job.id,
            task_id=case.task_id,
            reason=decision.reason,
        )
        return "escalated"
    state = "accepted" if decision.verdict is V.Verdict.ACCEPTED else "rejected"
    conn.execute(
        update(tv.cases)
        .where(tv.cases.c.id == case_id)
        .values(state=state, evidence=evidence, decided_at=now)
    )
    agreeing = [c.checker for c in done if c.checker not in decision.faulty]
    task = service.get_task(conn, case.task_id)
    if state == "accepted":
        prov = _provider(conn, case.provider)
        _save_record(conn, V.after_verified(record_of(conn, prov)), now)
    else:
        _reverse_and_redo(conn, case, job, task, now)
    at_fault = dict.fromkeys(
        decision.faulty if state == "accepted" else (case.provider, *decision.faulty)
    )
    for party in at_fault:
        if party != COORDINATOR:
            _fault(conn, params, party, job, agreeing[0] if agreeing else None, case_id, now)
    for checker in agreeing:
        if checker != COORDINATOR:
            pay = verification_sampling.check_pay(task.price, case.spec)
            _pay_checker(conn, checker, pay, case_id, now)
    store.record(
        conn,
        now,
        f"audit_{state}",
        job_id=job.id,
        task_id=case.task_id,
        actor=case.provider,
        checkers=[c.checker for c in done],
        faulty=list(decision.faulty),
        reason=decision.reason,
    )
    return state


def _reverse_and_redo(conn: Connection, case: Any, job: Any, task: Any, now: float) -> None:
    """The buyer gets back what it paid for the wrong result; the task is redone."""
    payout = conn.execute(
        select(tv.payouts)
        .where(
            tv.payouts.c.task_id == case.task_id,
            tv.payouts.c.provider == case.provider,
            tv.payouts.c.state == "held",
        )
        .order_by(tv.payouts.c.id.desc())
    ).first()
    open_job = JobState(job.state) not in TERMINAL_JOB_STATES
    target = (
        ledger.escrow_account(job.buyer, job.id)
        if open_job
        else ledger.available_account(job.buyer)
    )
    if payout is not None:
        bal = store.lock_balances(conn, [ledger.held_account(case.provider), ledger.FEES])
        # audits are paid from fees, so the fee refund is what the fees still hold
        fee = min(payout.fee, bal.get(ledger.FEES, 0))
        if payout.net + fee > 0:
            txn = ledger.reverse_held_payment(
                bal, case.provider, target, payout.net, fee, ref=case.task_id
            )
            store.apply(conn, txn, now)
        conn.execute(
            update(tv.payouts)
            .where(tv.payouts.c.id == payout.id)
            .values(state="clawed", settled_at=now)
        )
    if open_job and task.state == TaskState.ACCEPTED.value and task.provider == case.provider:
        task_transition(TaskState.ACCEPTED, TaskState.REJECTED)
        conn.execute(
            update(db.tasks)
            .where(db.tasks.c.id == task.id)
            .values(state=TaskState.REJECTED.value, updated_at=now)
        )
        # back to the queue; a cheated attempt does not count against the buyer's job
        task_transition(TaskState.REJECTED, TaskState.PENDING)
        conn.execute(
            update(db.tasks)
            .where(db.tasks.c.id == task.id, db.tasks.c.state == TaskState.REJECTED.value)
            .values(
                state=TaskState.PENDING.value,
                provider=None,
                deadline=None,
                attempts=max(0, task.attempts - 1),
                updated_at=now,
            )
        )


def _fault(
    conn: Connection,
    params: V.VerificationParams,
    party: str,
    job: Any,
    whistleblower: str | None,
    ref: str,
    now: float,
) -> None:
    """A proven fault: the record restarts probation, the stake is slashed, bans follow."""
    prov = _provider(conn, party)
    rec = V.after_fault(record_of(conn, prov))
    banned = V.is_banned(rec, params)
    extra: dict[str, Any] = {}
    if banned:
        extra = {"banned": True, "ban_reason": f"{rec.faults} proven faults"}
    _save_record(conn, rec, now, **extra)
    money = stake_of(conn, party)
    amount = V.slash_amount(money["staked"] + money["unbonding"], params)
    if amount > 0:
        to_buyer, to_auditor, burned = V.slash_split(amount, params)
        if whistleblower is None:
            to_auditor, burned = 0, burned + to_auditor
        bal = store.lock_balances(
            conn, [ledger.stake_account(party), ledger.unbonding_account(party)]
        )
        txn = ledger.slash(
            bal,
            party,
            amount,
            job.buyer if job is not None else party,
            whistleblower or party,
            (to_buyer, to_auditor, burned) if job is not None else (0, 0, amount),
            ref=ref,
        )
        store.apply(conn, txn, now)
    store.record(
        conn,
        now,
        "provider_faulted",
        job_id=job.id if job is not None else None,
        actor=party,
        slashed=str(amount),
        faults=rec.faults,
        banned=banned,
    )


def _pay_checker(conn: Connection, checker: str, price: int, ref: str, now: float) -> None:
    """An auditor whose result agreed is paid the task's price out of the protocol fees,
    as far as they go (see docs/benchmarks/verification.md for when they do). Fees of
    payments still held are not the protocol's yet: a fault refunds them to the buyer."""
    fees = store.lock_balances(conn, [ledger.FEES]).get(ledger.FEES, 0)
    held = select(tv.payouts.c.fee).where(tv.payouts.c.state == "held")
    reserved = sum(r.fee for r in conn.execute(held))
    pay = min(price, fees - reserved)
    if pay > 0:
        store.apply(
            conn, ledger.pay_auditor_from_fees({ledger.FEES: fees}, checker, pay, ref=ref), now
        )


def apply_known_answer(conn: Connection, check_id: str, passed: bool, now: float) -> None:
    chk = conn.execute(select(tv.checks).where(tv.checks.c.id == check_id)).one()
    conn.execute(
        update(tv.checks)
        .where(tv.checks.c.id == check_id)
        .values(state="passed" if passed else "failed", updated_at=now)
    )
    prov = _provider(conn, chk.checker)
    _save_record(conn, V.after_known_answer(record_of(conn, prov), passed), now)
    store.record(conn, now, "known_answer_checked", actor=chk.checker, passed=passed)


def add_local_result(conn: Connection, case_id: str, sha256: str | None, now: float) -> None:
    """The coordinator's own re-run, as a referee of last resort (None: it could not)."""
    conn.execute(
        insert(tv.checks).values(
            id=f"{CHECK_PREFIX}{secrets.token_hex(8)}",
            case_id=case_id,
            role="referee",
            checker=COORDINATOR,
            state="done" if sha256 else "expired",
            result_sha256=sha256,
            created_at=now,
            updated_at=now,
        )
    )
    if sha256:
        conn.execute(update(tv.cases).where(tv.cases.c.id == case_id).values(state="auditing"))


def stuck_for_referee(conn: Connection) -> list[str]:
    """Waiting cases that already had a mismatch: the coordinator may referee them."""
    out = []
    for case in conn.execute(select(tv.cases).where(tv.cases.c.state == "waiting")).all():
        if case.evidence and case.evidence.get("verdict") == V.Verdict.ESCALATE.value:
            live = [c for c in _checks(conn, case.id) if c.state in ("assigned", "running")]
            if not live and not any(c.checker == COORDINATOR for c in _checks(conn, case.id)):
                out.append(case.id)
    return out


# ---- read models ----------------------------------------------------------------------


def job_verification(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """Every case of a job with its checks and evidence, oldest first."""
    rows = conn.execute(
        select(tv.cases).where(tv.cases.c.job_id == job_id).order_by(tv.cases.c.created_at)
    ).all()
    out = []
    for case in rows:
        out.append(
            {
                "case": case.id,
                "task_id": case.task_id,
                "provider": case.provider,
                "state": case.state,
                "audit_rate": case.rate,
                "rerun": case.rerun,
                "result_sha256": case.result_sha256,
                "signature": case.signature,
                "checks": [
                    {
                        "id": c.id,
                        "role": c.role,
                        "checker": c.checker,
                        "state": c.state,
                        "result_sha256": c.result_sha256,
                        "signature": c.signature,
                    }
                    for c in _checks(conn, case.id)
                ],
                "evidence": case.evidence,
            }
        )
    return out


def held_of(conn: Connection, address: str) -> int:
    acct = ledger.held_account(address)
    return store.balances_for(conn, [acct])[acct]
