"""What an agent's poll finds: one read says whether anything waits for it, then a claim.

A thousand agents poll all the time, and most polls find nothing or only job tasks. So a
poll first runs a single read-only probe, built once from each domain's own condition
(the provider is registered and not banned; a hardware challenge, check or bisection
query may wait for it; a straggler's copy is wanted; a task it may run is pending), and
takes the writer lock only for what the probe found.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Select, bindparam, exists, select

from gpudepin.coordinator import ai, db, service, speculation, verification, verification_http

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime


@cache
def _probe() -> Select[bool, bool, bool, bool, bool]:
    who: Any = bindparam("who")
    return select(
        exists().where(db.providers.c.address == who).label("registered"),
        verification.banned(who).label("banned"),
        verification_http.extras_waiting(who).label("extras"),
        speculation.copies_wanted().label("copies"),
        exists(service.pending_for(who)).label("pending"),
    )


async def claim_for(rt: Runtime, who: str, most: int) -> list[dict[str, Any]]:
    """A hardware proof, check or bisection query for ``who`` first (alone), else up to
    ``most`` of the oldest tasks it may run; empty when nothing waits. Forbidden for an
    address that is not a registered provider in good standing."""
    found = await rt.quick(_look, rt, who)
    if found.extras:  # rare, and preparing one may read a checkpoint: in the thread pool
        extra = await run_in_threadpool(verification_http.claim_extra, rt, who)
        if extra is not None:
            return [extra]
    if not (found.copies or found.pending):
        return []
    return await rt.quick(_claim, rt, who, most, bool(found.copies))


def _look(rt: Runtime, who: str) -> Any:
    with rt.reader.connect() as conn:
        found = conn.execute(_probe(), {"who": who}).one()
        if not found.registered or found.banned:
            service.require_provider(conn, who)  # raises, saying why
    return found


def _claim(rt: Runtime, who: str, most: int, copies: bool) -> list[dict[str, Any]]:
    # the probe's word on copies stands: one wanted since then waits for the next poll
    with rt.engine.begin() as conn:
        ttl = rt.settings.assignment_ttl_s
        claimed = service.claim_tasks(conn, who, rt.clock(), ttl, most, copies)
    claims = [
        {
            "id": task.id,
            "job_id": job.id,
            "kind": job.kind,
            "label": task.label,
            "job_spec": job.spec,
            "task_spec": task.spec,
            "inputs": job.inputs,
            "deadline": task.deadline,
        }
        for task, job in claimed
    ]
    return ai.resume_claims(rt.reader, claims)  # training that died resumes where it was
