"""Operations of the coordinator: the pure rules of ``gpudepin.core`` applied to SQL rows.

Each function takes an open connection inside a transaction; the caller commits. File
work (validation of uploads, merging outputs) happens outside these transactions.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    Update,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)

from gpudepin.coordinator import db, enterprise, market, speculation, store
from gpudepin.core import ledger
from gpudepin.core.errors import Conflict, Forbidden, InvalidInput, NotFound, RaceLost
from gpudepin.core.hardware import gpu_class
from gpudepin.core.jobs import (
    TERMINAL_JOB_STATES,
    JobState,
    TaskState,
    after_lost_attempt,
    job_transition,
    task_transition,
)
from gpudepin.workloads.base import TaskPlan

PG = "postgresql"


# ---- wallet ---------------------------------------------------------------------------


def wallet(conn: Connection, address: str) -> dict[str, int]:
    """Available, escrowed and earned balances of an address."""
    addr = address.lower()
    avail = store.balances_for(conn, [ledger.available_account(addr)])
    escrow_prefix = f"escrow:{addr}:"
    escrow_total = sum(
        r.amount
        for r in conn.execute(
            select(db.balances).where(db.balances.c.account.like(escrow_prefix + "%"))
        )
    )
    earned = store.balances_for(conn, [ledger.earned_account(addr), ledger.held_account(addr)])
    return {
        "available": avail[ledger.available_account(addr)],
        "escrow": escrow_total,
        "earned": earned[ledger.earned_account(addr)],
        # earnings still inside their challenge window (see coordinator/verification.py)
        "held": earned[ledger.held_account(addr)],
    }


def faucet(conn: Connection, address: str, amount: int, now: float) -> None:
    store.apply(conn, ledger.deposit(address, amount, ref="faucet"), now)
    store.record(conn, now, "faucet", actor=address.lower(), amount=str(amount))


def withdraw(conn: Connection, address: str, source: str, amount: int, now: float) -> None:
    accounts = {"available": ledger.available_account, "earned": ledger.earned_account}
    if source not in accounts:
        raise InvalidInput(f"cannot withdraw from {source!r}", hint="Use available or earned.")
    acct = accounts[source](address)
    txn = ledger.withdraw(store.lock_balances(conn, [acct]), acct, amount, ref="withdraw")
    store.apply(conn, txn, now)
    store.record(conn, now, "withdraw", actor=address.lower(), amount=str(amount), source=source)


# ---- providers ------------------------------------------------------------------------


def register_provider(
    conn: Connection,
    address: str,
    name: str,
    region: str,
    operator: str,
    hardware: dict[str, Any],
    agent_version: str,
    now: float,
) -> None:
    """Create or update a provider's record (its hardware as it reported it)."""
    from gpudepin.coordinator import verification  # it builds on this module

    verification.require_not_banned(conn, address)
    cls = gpu_class(str(hardware.get("gpu_class", "cpu"))).name
    values = dict(
        name=name,
        region=region,
        operator=operator or address,
        gpu_class=cls,
        hardware=hardware,
        last_seen=now,
        agent_version=agent_version,
    )
    exists = conn.execute(
        select(db.providers.c.address).where(db.providers.c.address == address)
    ).first()
    if exists:
        conn.execute(update(db.providers).where(db.providers.c.address == address).values(**values))
    else:
        conn.execute(insert(db.providers).values(address=address, registered_at=now, **values))
    store.record(conn, now, "provider_registered", actor=address, region=region, gpu_class=cls)


_PROVIDER = select(db.providers).where(db.providers.c.address == bindparam("address"))


def require_provider(conn: Connection, address: str) -> Any:
    row = conn.execute(_PROVIDER, {"address": address}).first()
    if row is None:
        raise Forbidden(
            "this address is not a registered provider",
            hint="Start the agent with `gpudepin provider start`; it registers itself.",
        )
    from gpudepin.coordinator import verification  # it builds on this module

    verification.require_not_banned(conn, address)
    return row


@cache
def _beat_statements() -> tuple[Update, Update, Update]:
    """A heartbeat's writes, built once: the provider's ``last_seen`` unless it is banned
    (the ban checked in the same statement), then the deadline of every task assigned to
    it, or of those it names."""
    from gpudepin.coordinator import verification  # it builds on this module

    t = db.tasks.c
    who: Any = bindparam("who")
    deadline: Any = bindparam("deadline")
    mine = (t.state == TaskState.ASSIGNED.value, t.provider == who)
    touch = (
        update(db.providers)
        .where(db.providers.c.address == who, ~verification.banned(who))
        .values(last_seen=bindparam("now"))
    )
    every = update(db.tasks).where(*mine).values(deadline=deadline)
    named = (
        update(db.tasks)
        .where(*mine, t.id.in_(bindparam("held", expanding=True)))
        .values(deadline=deadline)
    )
    return touch, every, named


def heartbeat(
    conn: Connection, provider: str, held: list[str] | None, now: float, ttl: float
) -> int:
    """Mark a registered provider alive and extend the deadlines of the tasks it holds;
    returns how many it extended. Forbidden for an unregistered or banned address.

    ``held`` names the ids the agent says it is working on (tasks, copies of tasks and
    checks alike): one assigned to it that it does not name (its claim's answer was lost,
    say, to a coordinator killed after the claim committed) is then left to expire and go
    elsewhere instead of being kept alive by every beat, and an agent between tasks costs
    no statement for them. Without a list (older agents) every one is extended.
    """
    from gpudepin.coordinator import verification  # it builds on this module

    touch, every, named = _beat_statements()
    if conn.execute(touch, {"who": provider, "now": now}).rowcount != 1:
        require_provider(conn, provider)  # raises: not registered, or banned
        raise Conflict(f"provider {provider} changed meanwhile")
    if held is None:
        params = {"who": provider, "deadline": now + ttl}
        extended = conn.execute(every, params).rowcount
        verification.extend_checks(conn, provider, now, ttl)
        speculation.extend_copies(conn, provider, now, ttl)
        return int(extended)
    checks = [h for h in held if verification.is_check_id(h)]
    tasks = [h for h in held if not verification.is_check_id(h)]
    extended = 0
    if tasks:
        params = {"who": provider, "deadline": now + ttl, "held": tasks}
        extended = conn.execute(named, params).rowcount
        speculation.extend_copies(conn, provider, now, ttl, tasks)
    if checks:
        verification.extend_checks(conn, provider, now, ttl, checks)
    return int(extended)


# ---- jobs -----------------------------------------------------------------------------


def new_job_id() -> str:
    return "j" + secrets.token_hex(6)


def create_job(
    conn: Connection,
    *,
    buyer: str,
    kind: str,
    spec: dict[str, Any],
    inputs: dict[str, str],
    price_per_task: int,
    plans: list[TaskPlan],
    max_attempts: int,
    now: float,
) -> str:
    """Persist a job with its tasks and lock its escrow, all or nothing."""
    if not plans:
        raise InvalidInput("the job has no tasks")
    job_id = new_job_id()
    prices = [price_per_task * int(p.spec.get("units", 1)) for p in plans]
    escrow = sum(prices)
    txn = ledger.lock_escrow(
        store.lock_balances(conn, [ledger.available_account(buyer)]), buyer, job_id, escrow
    )
    conn.execute(
        insert(db.jobs).values(
            id=job_id,
            buyer=buyer,
            kind=kind,
            state=JobState.SUBMITTED.value,
            spec=spec,
            inputs=inputs,
            price_per_task=price_per_task,
            escrow=escrow,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
        )
    )
    conn.execute(
        insert(db.tasks),
        [
            {
                "id": f"{job_id}-{i}",
                "job_id": job_id,
                "idx": i,
                "label": p.label,
                "spec": p.spec,
                "price": price,
                "state": TaskState.PENDING.value,
                "attempts": 0,
                "updated_at": now,
            }
            for i, (p, price) in enumerate(zip(plans, prices, strict=True))
        ],
    )
    store.apply(conn, txn, now)
    _set_job_state(conn, job_id, JobState.SUBMITTED, JobState.FUNDED, now)
    store.record(
        conn, now, "job_created", job_id=job_id, actor=buyer, tasks=len(plans), escrow=str(escrow)
    )
    return job_id


def _set_job_state(
    conn: Connection,
    job_id: str,
    current: JobState | str,
    target: JobState,
    now: float,
    reason: str | None = None,
) -> None:
    job_transition(current, target)
    values: dict[str, Any] = {"state": target.value, "updated_at": now}
    if reason is not None:
        values["reason"] = reason
    res = conn.execute(
        update(db.jobs)
        .where(db.jobs.c.id == job_id, db.jobs.c.state == JobState(current).value)
        .values(**values)
    )
    if res.rowcount != 1:
        raise Conflict(f"job {job_id} changed state meanwhile")


def get_job(conn: Connection, job_id: str, viewer: str | None = None) -> Any:
    """A job row; Forbidden when ``viewer`` is given and is not its buyer."""
    row = conn.execute(select(db.jobs).where(db.jobs.c.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    if viewer is not None and row.buyer != viewer:
        raise Forbidden(f"job {job_id} belongs to another buyer")
    return row


def job_tasks(conn: Connection, job_id: str) -> list[Any]:
    return list(
        conn.execute(select(db.tasks).where(db.tasks.c.job_id == job_id).order_by(db.tasks.c.idx))
    )


def list_jobs(conn: Connection, buyer: str, limit: int = 100) -> list[Any]:
    q = select(db.jobs).where(db.jobs.c.buyer == buyer).order_by(db.jobs.c.created_at.desc())
    return list(conn.execute(q.limit(limit)))


def _fail_job(conn: Connection, job: Any, reason: str, now: float, state: JobState) -> None:
    _set_job_state(conn, job.id, job.state, state, now, reason=reason)
    conn.execute(
        update(db.tasks)
        .where(
            db.tasks.c.job_id == job.id,
            db.tasks.c.state.in_([TaskState.PENDING.value, TaskState.ASSIGNED.value]),
        )
        .values(state=TaskState.CANCELLED.value, updated_at=now)
    )
    refund = ledger.refund_escrow(
        store.lock_balances(conn, [ledger.escrow_account(job.buyer, job.id)]), job.buyer, job.id
    )
    store.apply(conn, refund, now)
    store.record(
        conn,
        now,
        f"job_{state.value}",
        job_id=job.id,
        reason=reason,
        refunded=str(refund.postings[1].amount) if refund else "0",
    )


def cancel_job(conn: Connection, buyer: str, job_id: str, now: float) -> None:
    job = get_job(conn, job_id, viewer=buyer)
    if JobState(job.state) in TERMINAL_JOB_STATES:
        raise Conflict(f"job {job_id} is already {job.state}")
    _fail_job(conn, job, "cancelled by the buyer", now, JobState.CANCELLED)


# ---- tasks ----------------------------------------------------------------------------


def pending_for(provider: Any) -> Select[Any]:
    """The pending tasks of active jobs that ``provider`` (an address or a bind
    parameter) may run."""
    from gpudepin.coordinator import verification  # it builds on this module

    active = select(db.jobs.c.id).where(
        db.jobs.c.state.in_([JobState.FUNDED.value, JobState.RUNNING.value])
    )
    return select(db.tasks.c.id, db.tasks.c.job_id).where(
        db.tasks.c.state == TaskState.PENDING.value,
        db.tasks.c.job_id.in_(active),
        enterprise.claimable_by(db.tasks.c.job_id, provider),
        market.claimable_by(db.tasks.c.job_id, provider),
        verification.claimable_by(db.tasks.c.id, provider),
    )


_WALK_THE_INDEX = text("SET LOCAL enable_sort = off")


@cache
def _claim_statements(dialect: str) -> tuple[Select[Any], Any]:
    """The claim's two statements, built once: the oldest pending tasks ``who`` may run,
    and their compare-and-set to assigned, returning the rows it won."""
    t = db.tasks.c
    oldest = (
        pending_for(bindparam("who"))
        .order_by(t.updated_at, t.idx)
        .limit(bindparam("most", type_=Integer))
    )
    if dialect == PG:
        oldest = oldest.with_for_update(skip_locked=True, of=db.tasks)
    take = (
        update(db.tasks)
        .where(t.id.in_(bindparam("ids", expanding=True)), t.state == TaskState.PENDING.value)
        .values(
            state=TaskState.ASSIGNED.value,
            provider=bindparam("who"),
            assigned_at=bindparam("now"),
            deadline=bindparam("deadline"),
            attempts=t.attempts + 1,
            updated_at=bindparam("now"),
        )
        .returning(*db.tasks.c)
    )
    return oldest, take


def claim_tasks(
    conn: Connection,
    provider: str,
    now: float,
    ttl: float,
    most: int,
    copies: bool | None = None,
) -> list[Any]:
    """Assign up to ``most`` of the oldest pending tasks to ``provider``, as ``(task, job)``
    pairs; safe with concurrent agents. A straggler's copy, when one is due, comes alone;
    ``copies`` says whether one is wanted when the caller has just read it (None: look).

    The statements do not grow with ``most`` (one select, one compare-and-set update that
    returns what it won), so an agent prefetching tiny tasks costs about what one claim
    does. The caller commits right after: a new job's start is the last write, sent
    with the COMMIT on PostgreSQL (``db.last_write``).
    """
    if copies is None:
        copies = bool(conn.execute(select(speculation.copies_wanted())).scalar())
    if copies:
        copy = speculation.claim_copy(conn, provider, now, ttl)  # stragglers' copies first
        if copy is not None:
            return [copy]
    oldest, take = _claim_statements(conn.dialect.name)
    if conn.dialect.name == PG:
        # walk the claim's index in queue order, whatever the statistics say: analyzed
        # while the queue was empty between jobs (it often is, under load), PostgreSQL
        # takes pending tasks for rare and plans to sort them all, antijoined with their
        # jobs' terms, to hand out eight; 4,000-9,000 buffers a claim instead of ~200 in
        # the saturated load window (auto_explain, docs/benchmarks/load.md)
        conn.execute(_WALK_THE_INDEX)
    ids: list[str] = list(conn.execute(oldest, {"who": provider, "most": most}).scalars())
    if not ids:
        return []
    # compare-and-set: only one claimant can move a task out of pending
    params = {"ids": ids, "who": provider, "now": now, "deadline": now + ttl}
    won = {task.id: task for task in conn.execute(take, params)}
    if not won:
        return []
    jobs = jobs_by_id(conn, {task.job_id for task in won.values()})
    if market.on_claimed(conn, list(won.values()), provider, now):  # winners' bids price them
        again = select(db.tasks).where(db.tasks.c.id.in_(list(won)))
        won = {task.id: task for task in conn.execute(again)}
    store.record_many(
        conn,
        now,
        "task_assigned",
        [{"job_id": t.job_id, "task_id": t.id, "actor": provider} for t in won.values()],
    )
    funded = sorted(j.id for j in jobs.values() if j.state == JobState.FUNDED.value)
    if funded:
        # every agent claiming a new job's first tasks sees it funded and moves it to
        # running; the first holds the job's row until it commits and the others wait
        # for it, so this is the claim's last write (the caller commits right after)
        job_transition(JobState.FUNDED, JobState.RUNNING)
        db.last_write(conn, _START_JOBS, {"ids": funded, "now": now})
    return [(won[i], jobs[won[i].job_id]) for i in ids if i in won]


# hot statements are built once: building one per call (and the cache key SQLAlchemy then
# derives from it) cost several times what running it costs on SQLite
_JOBS_BY_ID = select(db.jobs).where(db.jobs.c.id.in_(bindparam("ids", expanding=True)))
_START_JOBS = (
    update(db.jobs)
    .where(
        db.jobs.c.id.in_(bindparam("ids", expanding=True)),
        db.jobs.c.state == JobState.FUNDED.value,
    )
    .values(state=JobState.RUNNING.value, updated_at=bindparam("now"))
)


def jobs_by_id(conn: Connection, ids: set[str]) -> dict[str, Any]:
    """The rows of the jobs ``ids`` names, by id (one query)."""
    return {j.id: j for j in conn.execute(_JOBS_BY_ID, {"ids": sorted(ids)})}


def get_task(conn: Connection, task_id: str) -> Any:
    row = conn.execute(select(db.tasks).where(db.tasks.c.id == task_id)).first()
    if row is None:
        raise NotFound(f"no task {task_id}")
    return row


def require_assigned(conn: Connection, task_id: str, provider: str) -> Any:
    """The task, if it is assigned to ``provider`` right now; Forbidden otherwise."""
    task = get_task(conn, task_id)
    if task.provider != provider or task.state != TaskState.ASSIGNED.value:
        if speculation.holds_copy(conn, task, provider):
            return task
        raced = speculation.refusal(conn, task_id, provider)
        if raced:
            raise RaceLost(raced)
        raise Forbidden(
            f"task {task_id} is not assigned to you",
            hint="Its assignment may have expired and gone to another provider.",
        )
    return task


def submit_result(
    conn: Connection,
    *,
    provider: str,
    task_id: str,
    sha256: str,
    signature: str,
    meta: dict[str, Any],
    rejection: str | None,
    fee_bps: int,
    now: float,
) -> str:
    """Record a provider's result; pay it into hold-back when accepted (the trust layer
    audits it and releases the pay after the challenge window), requeue it when rejected."""
    task = require_assigned(conn, task_id, provider)
    if task.provider != provider:  # a speculative copy delivered first
        if rejection is not None:
            speculation.drop_copy(conn, task, provider, "rejected", rejection, now)
            return TaskState.REJECTED.value
        task = speculation.take_over(conn, task, provider, now)
    task_transition(task.state, TaskState.SUBMITTED)
    # a compare-and-set: the task was read before another delivery of it (the original
    # or a copy, in a concurrent batch) may have committed, and paying both is paying twice
    res = conn.execute(
        update(db.tasks)
        .where(
            db.tasks.c.id == task_id,
            db.tasks.c.provider == provider,
            db.tasks.c.state == TaskState.ASSIGNED.value,
        )
        .values(
            state=TaskState.SUBMITTED.value,
            result_sha256=sha256,
            signature=signature,
            result_meta=meta,
            updated_at=now,
        )
    )
    if res.rowcount != 1:
        require_assigned(conn, task_id, provider)  # raises why: a race lost, an expiry
        raise Conflict(f"task {task_id} changed state meanwhile")
    job = get_job(conn, task.job_id)
    store.record(
        conn,
        now,
        "task_submitted",
        job_id=job.id,
        task_id=task_id,
        actor=provider,
        sha256=sha256,
        signature=signature,
        seconds=meta.get("seconds"),
    )
    if rejection is not None:
        _reject(conn, task, job, rejection, now)
        return TaskState.REJECTED.value
    conn.execute(
        update(db.tasks)
        .where(db.tasks.c.id == task_id)
        .values(state=TaskState.ACCEPTED.value, updated_at=now)
    )
    from gpudepin.coordinator import verification  # it builds on this module

    pay = verification.on_accepted(
        conn,
        job=job,
        provider=provider,
        accepted=[(task, sha256, signature)],
        fee_bps=fee_bps,
        now=now,
    )
    store.post(conn, [pay], now)
    store.record(
        conn,
        now,
        "task_accepted",
        job_id=job.id,
        task_id=task_id,
        actor=provider,
        paid=str(task.price),
    )
    speculation.settle_race(conn, task, provider, now)
    return TaskState.ACCEPTED.value


def _reject(conn: Connection, task: Any, job: Any, why: str, now: float) -> None:
    conn.execute(
        update(db.tasks)
        .where(db.tasks.c.id == task.id)
        .values(state=TaskState.REJECTED.value, updated_at=now)
    )
    store.record(
        conn, now, "task_rejected", job_id=job.id, task_id=task.id, actor=task.provider, reason=why
    )
    _requeue(conn, task.id, TaskState.REJECTED, task.attempts, job, task.label, why, now)


def _requeue(
    conn: Connection,
    task_id: str,
    current: TaskState,
    attempts: int,
    job: Any,
    label: str,
    why: str,
    now: float,
) -> None:
    if speculation.promote(conn, get_task(conn, task_id), now):
        return  # a copy of the lost attempt runs on: it becomes the attempt
    decision = after_lost_attempt(attempts, job.max_attempts, label, why)
    task_transition(current, decision.state)
    conn.execute(
        update(db.tasks)
        .where(db.tasks.c.id == task_id, db.tasks.c.state == current.value)
        .values(state=decision.state.value, provider=None, deadline=None, updated_at=now)
    )
    if decision.fail_job_reason:
        _fail_job(conn, get_job(conn, job.id), decision.fail_job_reason, now, JobState.FAILED)


def give_back(conn: Connection, provider: str, task_id: str, reason: str, now: float) -> str:
    """The provider could not run its task: retry it elsewhere, or fail the job."""
    task = require_assigned(conn, task_id, provider)
    if task.provider != provider:  # a speculative copy gave up; the original runs on
        speculation.drop_copy(conn, task, provider, "failed", reason, now)
        return str(task.state)
    job = get_job(conn, task.job_id)
    store.record(
        conn, now, "task_failed", job_id=job.id, task_id=task_id, actor=provider, reason=reason
    )
    _requeue(conn, task_id, TaskState.ASSIGNED, task.attempts, job, task.label, reason, now)
    return str(get_task(conn, task_id).state)


def expire_assignments(conn: Connection, now: float) -> int:
    """Put tasks whose agents went silent back in the queue (or fail their job)."""
    q = select(db.tasks).where(
        db.tasks.c.state == TaskState.ASSIGNED.value, db.tasks.c.deadline < now
    )
    if conn.dialect.name == PG:
        q = q.with_for_update(skip_locked=True)
    expired = list(conn.execute(q))
    for task in expired:
        job = get_job(conn, task.job_id)
        store.record(conn, now, "task_expired", job_id=job.id, task_id=task.id, actor=task.provider)
        _requeue(
            conn,
            task.id,
            TaskState.ASSIGNED,
            task.attempts,
            job,
            task.label,
            f"provider {task.provider} went silent",
            now,
        )
    return len(expired)


def jobs_ready_to_merge(conn: Connection) -> list[str]:
    """Running jobs whose every task is accepted and no audit is open: ready to merge."""
    open_tasks = (
        select(db.tasks.c.job_id)
        .where(db.tasks.c.state != TaskState.ACCEPTED.value)
        .group_by(db.tasks.c.job_id)
    )
    from gpudepin.coordinator import verification  # it builds on this module

    q = select(db.jobs.c.id).where(
        db.jobs.c.state == JobState.RUNNING.value,
        db.jobs.c.id.not_in(open_tasks),
        db.jobs.c.id.not_in(verification.blocking_jobs()),
    )
    return [r.id for r in conn.execute(q)]


def complete_job(conn: Connection, job_id: str, outputs: list[dict[str, Any]], now: float) -> None:
    """Mark a merged job completed and refund whatever escrow is left."""
    job = get_job(conn, job_id)
    _set_job_state(conn, job_id, job.state, JobState.COMPLETED, now)
    conn.execute(update(db.jobs).where(db.jobs.c.id == job_id).values(outputs=outputs))
    refund = ledger.refund_escrow(
        store.lock_balances(conn, [ledger.escrow_account(job.buyer, job_id)]), job.buyer, job_id
    )
    store.apply(conn, refund, now)
    store.record(conn, now, "job_completed", job_id=job_id, outputs=[o["name"] for o in outputs])


def fail_job(conn: Connection, job_id: str, reason: str, now: float) -> None:
    job = get_job(conn, job_id)
    if JobState(job.state) not in TERMINAL_JOB_STATES:
        _fail_job(conn, job, reason, now, JobState.FAILED)


# ---- read models ----------------------------------------------------------------------


def list_providers(conn: Connection) -> list[Any]:
    return list(conn.execute(select(db.providers).order_by(db.providers.c.registered_at)))


def provider_task_counts(conn: Connection) -> dict[str, int]:
    q = (
        select(db.tasks.c.provider, func.count())
        .where(db.tasks.c.state == TaskState.ACCEPTED.value)
        .group_by(db.tasks.c.provider)
    )
    return {r[0]: r[1] for r in conn.execute(q)}


def job_events(conn: Connection, job_id: str) -> list[Any]:
    q = select(db.events).where(db.events.c.job_id == job_id).order_by(db.events.c.id)
    return list(conn.execute(q))


def ledger_summary(conn: Connection) -> dict[str, Any]:
    """Totals per kind of account, and whether the books balance."""
    bals = store.all_balances(conn)
    totals: dict[str, int] = {}
    for account, amount in bals.items():
        kind = account.split(":", 1)[0] if account != ledger.WORLD else "world"
        if account in (ledger.FEES, ledger.BURNED):
            kind = account
        totals[kind] = totals.get(kind, 0) + amount
    return {"totals": totals, "problems": ledger.imbalances(bals)}
