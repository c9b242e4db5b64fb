"""Results handed in by providers, many at a time: recorded and paid into hold-back.

An agent running tiny tasks hands in dozens of results a second, so the usual case is
written set-wise: a batch whose tasks are each assigned to the submitting provider, race
no speculative copy and passed the workload's check is recorded with one statement per
table (tasks, events, ledger, payouts, verification cases), whatever its size. Anything
else (a rejected result, a copy racing, a task no longer the provider's) goes through
``service.submit_result`` one at a time, each in its own savepoint, so one refusal
never undoes the others. The set-wise write has no savepoint of its own: on PostgreSQL
its SAVEPOINT and RELEASE were two of a result's sixteen round trips, so when it is
refused (a task changed meanwhile, the escrow ran short) ``record_in`` rolls the whole
transaction back and records the batch again one result at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Connection, Engine, bindparam, select, update

from gpudepin.coordinator import db, service, speculation, store, verification
from gpudepin.core import ledger
from gpudepin.core.errors import Conflict, GpudepinError
from gpudepin.core.jobs import TaskState, task_transition


@dataclass(frozen=True)
class Submission:
    """A signed result that passed the checks needing no write."""

    task_id: str
    sha256: str
    signature: str
    meta: dict[str, Any]
    inline: bytes | None  # its bytes when they came inline (kept with the result)
    rejection: str | None  # the workload's reason to refuse it, if any
    task: Any  # the task's row and its job's, as read when the result was judged
    job: Any


def assigned(conn: Connection, provider: str, task_ids: list[str]) -> dict[str, tuple[Any, Any]]:
    """``(task, job)`` for each of ``task_ids`` assigned to ``provider`` right now, in two
    queries."""
    tasks = list(conn.execute(_ASSIGNED, {"ids": task_ids, "who": provider}))
    if not tasks:
        return {}
    jobs = service.jobs_by_id(conn, {task.job_id for task in tasks})
    return {task.id: (task, jobs[task.job_id]) for task in tasks}


_ASSIGNED = select(db.tasks).where(
    db.tasks.c.id.in_(bindparam("ids", expanding=True)),
    db.tasks.c.provider == bindparam("who"),
    db.tasks.c.state == TaskState.ASSIGNED.value,
)


class _BatchRefused(Exception):
    """The set-wise write was refused: ``record_in`` records the batch again, one by one."""


def record_in(
    engine: Engine, provider: str, results: list[Submission], fee_bps: int, now: float
) -> dict[str, str | GpudepinError]:
    """Record ``provider``'s results in one transaction (see ``record``); when the
    set-wise write is refused, in a second one that takes each result on its own."""
    try:
        return db.transaction(engine, lambda conn: record(conn, provider, results, fee_bps, now))
    except _BatchRefused:
        return db.transaction(
            engine, lambda conn: record(conn, provider, results, fee_bps, now, batch=False)
        )


def record(
    conn: Connection,
    provider: str,
    results: list[Submission],
    fee_bps: int,
    now: float,
    batch: bool = True,
) -> dict[str, str | GpudepinError]:
    """Record ``provider``'s results; each task id maps to its new state, or to the error
    that refused it (the others still count). With ``batch`` the usual results are
    written set-wise, and a refusal of that write raises ``_BatchRefused``, to be rolled
    back with the transaction (``record_in``); without, each goes on its own."""
    # tasks are locked in one order by every batch: a straggler's batch and its copy's
    # lock the same tasks, and in opposite orders they deadlocked
    results = sorted(results, key=lambda r: r.task_id)
    store.keep_inline(
        conn, provider, {r.sha256: r.inline for r in results if r.inline is not None}, now
    )
    racing = speculation.racing(conn, [r.task_id for r in results])
    # the rows were read when the results were judged; _accept's compare-and-set makes
    # sure each task is still this provider's (else the batch takes the per-task path)
    usual = [
        r
        for r in results
        if batch
        and r.rejection is None
        and r.task.provider == provider
        and r.task.state == TaskState.ASSIGNED.value
        and r.task_id not in racing
    ]
    out: dict[str, str | GpudepinError] = {}
    payments: list[ledger.Transaction] = []
    if usual:
        try:
            payments = _accept(conn, provider, usual, fee_bps, now)
        except GpudepinError as exc:
            raise _BatchRefused from exc  # each then goes the per-task way, with its answer
        out.update((r.task_id, TaskState.ACCEPTED.value) for r in usual)
    for r in results:
        if r.task_id in out:
            continue
        try:
            with conn.begin_nested():
                out[r.task_id] = service.submit_result(
                    conn,
                    provider=provider,
                    task_id=r.task_id,
                    sha256=r.sha256,
                    signature=r.signature,
                    meta=r.meta,
                    rejection=r.rejection,
                    fee_bps=fee_bps,
                    now=now,
                )
        except GpudepinError as exc:
            out[r.task_id] = exc
    # the batch's payment after everything else: it locks rows every result shares (see
    # store.post), and the caller (record_in) commits right after
    store.post(conn, payments, now, last=True)
    return out


# built once: the usual batch sets every task's result with one executemany
_ACCEPT = (
    update(db.tasks)
    .where(
        db.tasks.c.id == bindparam("t_id"),
        db.tasks.c.provider == bindparam("t_provider"),
        db.tasks.c.state == TaskState.ASSIGNED.value,
    )
    .values(
        state=TaskState.ACCEPTED.value,
        result_sha256=bindparam("t_sha256"),
        signature=bindparam("t_signature"),
        result_meta=bindparam("t_meta", type_=JSON),
        updated_at=bindparam("t_now"),
    )
)


def _accept(
    conn: Connection, provider: str, batch: list[Submission], fee_bps: int, now: float
) -> list[ledger.Transaction]:
    """Accept results of tasks assigned to ``provider``, set-wise; returns their
    payments, one per job, for the caller to post last."""
    task_transition(TaskState.ASSIGNED, TaskState.SUBMITTED)
    task_transition(TaskState.SUBMITTED, TaskState.ACCEPTED)
    res = conn.execute(
        _ACCEPT,
        [
            {
                "t_id": r.task_id,
                "t_provider": provider,
                "t_sha256": r.sha256,
                "t_signature": r.signature,
                "t_meta": r.meta,
                "t_now": now,
            }
            for r in batch
        ],
    )
    if res.rowcount != len(batch):
        raise Conflict("a task of the batch changed state meanwhile")
    submitted = [
        {
            "job_id": r.job.id,
            "task_id": r.task_id,
            "actor": provider,
            "detail": {
                "sha256": r.sha256,
                "signature": r.signature,
                "seconds": r.meta.get("seconds"),
            },
        }
        for r in batch
    ]
    accepted = [
        {
            "kind": "task_accepted",
            "job_id": r.job.id,
            "task_id": r.task_id,
            "actor": provider,
            "detail": {"paid": str(r.task.price)},
        }
        for r in batch
    ]
    store.record_many(conn, now, "task_submitted", submitted + accepted)
    by_job: dict[str, tuple[Any, list[tuple[Any, str, str]]]] = {}
    for r in batch:
        by_job.setdefault(r.job.id, (r.job, []))[1].append((r.task, r.sha256, r.signature))
    return [
        verification.on_accepted(
            conn, job=job, provider=provider, accepted=accepted, fee_bps=fee_bps, now=now
        )
        for job, accepted in by_job.values()
    ]
