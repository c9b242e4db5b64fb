"""Speculative re-execution of stragglers: the rules of ``core.hedging`` on SQL rows.

**Durations.** Each coordinator keeps a ``QuantileWindow`` per task class (job kind and
the GPU class of the provider that ran it, e.g. ``render:rtx4090``), fed from the event
log: every ``task_accepted`` event adds the time from assignment to acceptance, measured
on the coordinator's clock (an agent could under-report its own ``seconds`` to make
others look slow). The windows are rebuilt from the log after a restart.

**A race.** When ``core.hedging.stragglers`` names a running task, the duty records a
race in ``task_copies``: one row mirroring the original attempt (``speculative`` false)
and one ``wanted`` copy. The next poll of any other provider that may run the job gets
the copy before ordinary work (``claim_copy``, called first by ``service.claim_tasks``),
under the same task id. The copy's holder downloads inputs and submits like any holder.

**The end of a race.** The first result that passes the workload's check wins: a copy
that wins takes the task over (the tasks row now names its provider) and is paid the
task's price through the normal hold-back path. ``settle_race`` then cancels every other
copy and pays each as ``core.hedging.race_payouts`` rules (a speculative loser for the
time it ran, from the protocol fees; the straggling original nothing). A loser's late
submit is refused with 403 and a message saying who won. A copy whose result fails the
check is dropped and the original runs on; when the original is lost (silent agent,
rejected result) while a copy runs, the copy is promoted to be the task's attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

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

from gpudepin.coordinator import db, enterprise, store
from gpudepin.coordinator.tables_enterprise import task_copies
from gpudepin.core import ledger
from gpudepin.core.errors import RaceLost
from gpudepin.core.hedging import (
    HedgePolicy,
    QuantileWindow,
    RaceCopy,
    RunningTask,
    keeps_up,
    race_payouts,
    stragglers,
)
from gpudepin.core.jobs import TaskState
from gpudepin.core.money import format_amount

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.speculation")

WANTED, RUNNING = "wanted", "running"
ACTIVE = (WANTED, RUNNING)
WINDOW = 500  # durations kept per class
REPLAY = 50_000  # events read back to rebuild the windows after a restart
PG = "postgresql"


def task_class(kind: str, gpu_class: str) -> str:
    return f"{kind}:{gpu_class}"


def policy_of(settings: Any) -> HedgePolicy:
    return HedgePolicy(
        straggler_multiple=settings.straggler_multiple,
        min_samples=settings.straggler_min_samples,
    )


# ---- durations ------------------------------------------------------------------------


@dataclass
class Durations:
    """The windows of one coordinator process and how far into the event log they read."""

    windows: dict[str, QuantileWindow] = field(default_factory=dict)
    last_event: int | None = None

    def add(self, cls: str, seconds: float) -> None:
        self.windows.setdefault(cls, QuantileWindow(WINDOW)).add(seconds)

    def p95(self, cls: str, min_samples: int) -> float | None:
        w = self.windows.get(cls)
        return w.p95() if w is not None and len(w) >= min_samples else None


def durations_of(rt: Runtime) -> Durations:
    found = rt.caches.get("speculation")
    if not isinstance(found, Durations):
        found = rt.caches["speculation"] = Durations()
    return found


def feed(conn: Connection, durations: Durations, limit: int = 20_000) -> int:
    """Add the durations of tasks accepted since the last call; returns how many."""
    e, t, j, p = db.events, db.tasks, db.jobs, db.providers
    if durations.last_event is None:
        top = conn.execute(select(func.max(e.c.id))).scalar() or 0
        durations.last_event = max(0, top - REPLAY)
    q = (
        select(e.c.id, e.c.at, t.c.assigned_at, j.c.kind, p.c.gpu_class)
        .join(t, t.c.id == e.c.task_id)
        .join(j, j.c.id == t.c.job_id)
        .join(p, p.c.address == e.c.actor)
        .where(e.c.id > durations.last_event, e.c.kind == "task_accepted")
        .order_by(e.c.id)
        .limit(limit)
    )
    rows = list(conn.execute(q))
    for r in rows:
        # assigned_at moves when a task is redone; a stale pairing is simply skipped
        if r.assigned_at is not None and r.at >= r.assigned_at:
            durations.add(task_class(r.kind, r.gpu_class), r.at - r.assigned_at)
    if rows:
        durations.last_event = rows[-1].id
    else:
        # skip past other kinds of events too, so the next scan starts near the end
        top = conn.execute(select(func.max(e.c.id))).scalar()
        if top is not None and len(rows) < limit:
            durations.last_event = max(durations.last_event, top)
    return len(rows)


# ---- starting races -------------------------------------------------------------------


def _running(conn: Connection) -> list[Any]:
    t, j, p = db.tasks, db.jobs, db.providers
    copies = (
        select(func.count())
        .where(
            task_copies.c.task_id == t.c.id,
            task_copies.c.speculative.is_(True),
            task_copies.c.state.in_(ACTIVE),
        )
        .scalar_subquery()
    )
    q = (
        select(t.c.id, t.c.assigned_at, t.c.provider, j.c.kind, p.c.gpu_class, copies.label("n"))
        .join(j, j.c.id == t.c.job_id)
        .join(p, p.c.address == t.c.provider)
        .where(t.c.state == TaskState.ASSIGNED.value, t.c.assigned_at.is_not(None))
    )
    return list(conn.execute(q))


def start_race(
    conn: Connection, task_id: str, original: str, p95: float, now: float, policy: HedgePolicy
) -> bool:
    """Ask for one speculative copy of ``task_id`` if it still straggles on ``original``."""
    q = select(db.tasks).where(db.tasks.c.id == task_id)
    if conn.dialect.name == PG:
        q = q.with_for_update()
    task = conn.execute(q).first()
    if task is None or task.state != TaskState.ASSIGNED.value or task.provider != original:
        return False
    rows = list(conn.execute(select(task_copies).where(task_copies.c.task_id == task_id)))
    live = [r for r in rows if r.state in ACTIVE]
    if 1 + sum(r.speculative for r in live) >= policy.max_copies:
        return False
    if not any(not r.speculative and r.provider == original for r in live):
        conn.execute(
            insert(task_copies).values(
                task_id=task_id,
                job_id=task.job_id,
                provider=original,
                state=RUNNING,
                speculative=False,
                started_at=task.assigned_at,
                deadline=task.deadline,
                created_at=now,
            )
        )
    # the price over a typical run: a copy cancelled after one p95 earns about one price
    rate = task.price * 1000 // max(1, round(p95 * 1000))
    conn.execute(
        insert(task_copies).values(
            task_id=task_id,
            job_id=task.job_id,
            state=WANTED,
            speculative=True,
            created_at=now,
            rate_per_s=rate,
        )
    )
    store.record(
        conn,
        now,
        "copy_wanted",
        job_id=task.job_id,
        task_id=task_id,
        straggler=original,
        elapsed_s=round(now - task.assigned_at, 3),
        class_p95_s=round(p95, 3),
    )
    return True


def straggler_duty(rt: Runtime) -> None:
    """Feed the duration windows; ask for a copy of each straggler; end stale copies."""
    now = rt.clock()
    policy = policy_of(rt.settings)
    durations = durations_of(rt)
    with rt.reader.connect() as conn:
        feed(conn, durations)
    with rt.engine.begin() as conn:
        expire_copies(conn, now)
    if not any(len(w) >= policy.min_samples for w in durations.windows.values()):
        return  # nothing can be called slow yet: spare the scan of running tasks
    if not keeps_up(rt.lag_s, policy):
        return  # overloaded: no copy would help (core.hedging.stragglers), spare the scan
    with rt.reader.connect() as conn:
        running = _running(conn)
    by_id = {r.id: r for r in running}
    chosen = stragglers(
        [
            RunningTask(r.id, task_class(r.kind, r.gpu_class), r.assigned_at, 1 + r.n)
            for r in running
        ],
        durations.windows,
        now,
        policy,
        rt.lag_s,
    )
    started = 0
    for task_id in chosen:
        r = by_id[task_id]
        p95 = durations.p95(task_class(r.kind, r.gpu_class), policy.min_samples)
        if p95 is None:
            continue
        with rt.engine.begin() as conn:
            started += start_race(conn, task_id, r.provider, p95, now, policy)
    if started:
        rt.notify_work(started)  # each copy is one task for one other provider


# ---- copies on the claim path ---------------------------------------------------------


def copies_wanted() -> ColumnElement[bool]:
    """SQL: some straggler's copy is waiting for a provider."""
    return exists().where(task_copies.c.state == WANTED)


def claim_copy(conn: Connection, provider: str, now: float, ttl: float) -> Any | None:
    """Hand a wanted copy to ``provider``: (task, job) as ``service.claim_tasks`` returns each."""
    t, c = db.tasks, task_copies
    mine = c.alias("mine")
    q = (
        select(c.c.id, c.c.task_id, t.c.job_id)
        .join(t, t.c.id == c.c.task_id)
        .where(
            c.c.state == WANTED,
            t.c.state == TaskState.ASSIGNED.value,
            t.c.provider != provider,
            # a provider never races itself
            ~exists().where(mine.c.task_id == c.c.task_id, mine.c.provider == provider),
            enterprise.claimable_by(t.c.job_id, provider),
        )
        .order_by(c.c.created_at)
        .limit(1)
    )
    if conn.dialect.name == PG:
        q = q.with_for_update(skip_locked=True, of=c)
    row = conn.execute(q).first()
    if row is None:
        return None
    res = conn.execute(
        update(c)
        .where(c.c.id == row.id, c.c.state == WANTED)
        .values(state=RUNNING, provider=provider, started_at=now, deadline=now + ttl)
    )
    if res.rowcount != 1:
        return None
    store.record(conn, now, "copy_assigned", job_id=row.job_id, task_id=row.task_id, actor=provider)
    task = conn.execute(select(t).where(t.c.id == row.task_id)).one()
    job = conn.execute(select(db.jobs).where(db.jobs.c.id == row.job_id)).one()
    # the poll hands out the copy's own deadline, not the original's
    return SimpleNamespace(**{**task._mapping, "deadline": now + ttl}), job


def _copy_of(conn: Connection, task_id: str, provider: str, states: tuple[str, ...]) -> Any:
    return conn.execute(
        select(task_copies)
        .where(
            task_copies.c.task_id == task_id,
            task_copies.c.provider == provider,
            task_copies.c.speculative.is_(True),
            task_copies.c.state.in_(states),
        )
        .order_by(task_copies.c.id.desc())
        .limit(1)
    ).first()


def racing(conn: Connection, task_ids: list[str]) -> set[str]:
    """Which of ``task_ids`` have a copy wanted or running: their results settle a race
    (``settle_race``), so they take the per-task path."""
    return set(conn.execute(_RACING, {"ids": task_ids}).scalars())


_RACING = select(task_copies.c.task_id).where(
    task_copies.c.task_id.in_(bindparam("ids", expanding=True)), task_copies.c.state.in_(ACTIVE)
)


def holds_copy(conn: Connection, task: Any, provider: str) -> bool:
    """Whether ``provider`` runs a live speculative copy of ``task``."""
    return (
        task.state == TaskState.ASSIGNED.value
        and _copy_of(conn, task.id, provider, (RUNNING,)) is not None
    )


def refusal(conn: Connection, task_id: str, provider: str) -> str | None:
    """Why ``provider``'s attempt at ``task_id`` ended in a race, if it did (for a 403)."""
    row = conn.execute(
        select(task_copies)
        .where(task_copies.c.task_id == task_id, task_copies.c.provider == provider)
        .order_by(task_copies.c.id.desc())
        .limit(1)
    ).first()
    if row is None or row.state in ACTIVE:
        return None
    paid = format_amount(row.paid or 0)
    return (
        f"task {task_id} was raced by a speculative copy and your attempt ended "
        f"({row.state}, paid {paid}); the first accepted result won"
    )


def extend_copies(
    conn: Connection, provider: str, now: float, ttl: float, task_ids: list[str] | None = None
) -> None:
    """A heartbeat keeps the provider's running copies alive, like its tasks: every one,
    or those of ``task_ids``."""
    params = {"who": provider, "deadline": now + ttl}
    if task_ids is None:
        conn.execute(_EXTEND_COPIES, params)
    else:
        conn.execute(_EXTEND_NAMED_COPIES, {**params, "ids": task_ids})


_EXTEND_COPIES = (
    update(task_copies)
    .where(task_copies.c.provider == bindparam("who"), task_copies.c.state == RUNNING)
    .values(deadline=bindparam("deadline"))
)
_EXTEND_NAMED_COPIES = _EXTEND_COPIES.where(
    task_copies.c.task_id.in_(bindparam("ids", expanding=True))
)


# ---- ends of attempts -----------------------------------------------------------------


def drop_copy(conn: Connection, task: Any, provider: str, state: str, why: str, now: float) -> None:
    """End ``provider``'s copy (it failed or its result was refused); the race goes on."""
    copy = _copy_of(conn, task.id, provider, (RUNNING,))
    if copy is None:
        return
    conn.execute(update(task_copies).where(task_copies.c.id == copy.id).values(state=state, paid=0))
    kind = {"rejected": "task_rejected", "failed": "task_failed"}.get(state, "copy_cancelled")
    store.record(conn, now, kind, job_id=task.job_id, task_id=task.id, actor=provider, reason=why)


def take_over(conn: Connection, task: Any, provider: str, now: float) -> Any:
    """A copy delivered first: the task is now ``provider``'s attempt (its result wins)."""
    copy = _copy_of(conn, task.id, provider, (RUNNING,))
    res = conn.execute(
        update(db.tasks)
        .where(db.tasks.c.id == task.id, db.tasks.c.state == TaskState.ASSIGNED.value)
        .values(provider=provider, assigned_at=copy.started_at, deadline=copy.deadline)
    )
    if res.rowcount != 1:  # the original delivered meanwhile (another coordinator, say)
        raise RaceLost(f"task {task.id} was delivered by another provider first")
    return conn.execute(select(db.tasks).where(db.tasks.c.id == task.id)).one()


def promote(conn: Connection, task: Any, now: float) -> bool:
    """The task's attempt was lost while a copy runs: the copy becomes the attempt.

    Returns False (the caller requeues as usual) when no copy runs; wanted copies of a
    task that goes back to the queue are cancelled, since the queue will run it anyway.
    """
    rows = list(
        conn.execute(
            select(task_copies)
            .where(task_copies.c.task_id == task.id, task_copies.c.state.in_(ACTIVE))
            .order_by(task_copies.c.id)
        )
    )
    if not rows:
        return False
    lost = task.provider
    heir = next(
        (r for r in rows if r.speculative and r.state == RUNNING and r.provider != lost), None
    )
    for r in rows:
        if r.provider == lost and r.state == RUNNING:
            conn.execute(
                update(task_copies).where(task_copies.c.id == r.id).values(state="expired", paid=0)
            )
        elif heir is None and r.state == WANTED:
            conn.execute(
                update(task_copies)
                .where(task_copies.c.id == r.id)
                .values(state="cancelled", paid=0)
            )
    if heir is None:
        return False
    conn.execute(
        update(db.tasks)
        .where(db.tasks.c.id == task.id)
        .values(
            state=TaskState.ASSIGNED.value,
            provider=heir.provider,
            assigned_at=heir.started_at,
            deadline=heir.deadline,
            attempts=db.tasks.c.attempts + 1,
            updated_at=now,
        )
    )
    store.record(
        conn, now, "copy_promoted", job_id=task.job_id, task_id=task.id, actor=heir.provider
    )
    return True


def settle_race(conn: Connection, task: Any, winner: str, now: float) -> dict[str, int]:
    """End the race of an accepted task: cancel the other copies and pay them by the rule
    of ``core.hedging``. The winner's own pay went through the normal path."""
    rows = list(
        conn.execute(
            select(task_copies)
            .where(task_copies.c.task_id == task.id, task_copies.c.state.in_(ACTIVE))
            .order_by(task_copies.c.id)
        )
    )
    if not rows:
        return {}
    running = [r for r in rows if r.state == RUNNING]
    rate = max((r.rate_per_s or 0 for r in rows if r.speculative), default=0)
    race = [RaceCopy(r.provider, r.started_at, r.speculative) for r in running]
    if winner not in {r.provider for r in running}:
        race.append(RaceCopy(winner, now, False))
    owed = race_payouts(race, winner, task.price, rate, now)
    paid: dict[str, int] = {}
    for r in rows:
        if r.state == WANTED:
            conn.execute(
                update(task_copies)
                .where(task_copies.c.id == r.id)
                .values(state="cancelled", paid=0)
            )
            continue
        if r.provider == winner:
            conn.execute(
                update(task_copies)
                .where(task_copies.c.id == r.id)
                .values(state="won", paid=task.price)
            )
            continue
        want = owed.get(r.provider, 0)
        fees = store.lock_balances(conn, [ledger.FEES]).get(ledger.FEES, 0)
        amount = min(want, fees)
        if amount > 0:
            txn = ledger.pay_speculation_from_fees(
                {ledger.FEES: fees}, r.provider, amount, ref=task.job_id
            )
            store.apply(conn, txn, now)
        conn.execute(
            update(task_copies).where(task_copies.c.id == r.id).values(state="lost", paid=amount)
        )
        paid[r.provider] = amount
        store.record(
            conn,
            now,
            "copy_cancelled",
            job_id=task.job_id,
            task_id=task.id,
            actor=r.provider,
            winner=winner,
            speculative=r.speculative,
            ran_s=round(now - r.started_at, 3),
            paid=str(amount),
            shortfall=str(want - amount),
        )
    return paid


def expire_copies(conn: Connection, now: float) -> int:
    """End copies whose holder went silent, and races whose task left the running state."""
    t = db.tasks
    silent = list(
        conn.execute(
            select(task_copies).where(
                task_copies.c.state == RUNNING,
                task_copies.c.speculative.is_(True),
                task_copies.c.deadline < now,
            )
        )
    )
    for r in silent:
        conn.execute(
            update(task_copies).where(task_copies.c.id == r.id).values(state="expired", paid=0)
        )
        store.record(
            conn, now, "copy_expired", job_id=r.job_id, task_id=r.task_id, actor=r.provider
        )
    # a cancelled or failed job leaves its copies behind: nobody can win those races
    stale = select(t.c.id).where(
        t.c.id == task_copies.c.task_id, t.c.state == TaskState.ASSIGNED.value
    )
    res = conn.execute(
        update(task_copies)
        .where(task_copies.c.state.in_(ACTIVE), ~exists(stale))
        .values(state="cancelled", paid=0)
    )
    return len(silent) + (res.rowcount or 0)


def copies_of_job(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """Every copy of a job's raced tasks, for the audit."""
    q = select(task_copies).where(task_copies.c.job_id == job_id).order_by(task_copies.c.id)
    return [
        {
            "task_id": r.task_id,
            "provider": r.provider,
            "speculative": r.speculative,
            "state": r.state,
            "started_at": r.started_at,
            "paid": format_amount(r.paid) if r.paid is not None else None,
        }
        for r in conn.execute(q)
    ]
