"""Background work of the coordinator: expire silent agents' tasks, merge finished jobs."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import update

from gpudepin.coordinator import db, enterprise, market, service, settlement, speculation
from gpudepin.coordinator import tables_verification as tv
from gpudepin.coordinator.tables_enterprise import task_copies
from gpudepin.core.errors import GpudepinError
from gpudepin.core.jobs import TaskState
from gpudepin.workloads import registry
from gpudepin.workloads.base import TaskPlan

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.loops")


def resume(rt: Runtime) -> None:
    """On start, give every agent one assignment TTL from now to check in.

    While the coordinator was down its agents could neither heartbeat nor hand in, and
    the first pass would expire the work they are still running, blaming them for the
    outage: an audit check lost that way, whose checker was the only one eligible, held
    its job for good (the e2e restart test, when the restart outlasted the TTL).
    """
    until = rt.clock() + rt.settings.assignment_ttl_s
    held = (
        (db.tasks, db.tasks.c.state == TaskState.ASSIGNED.value),
        (tv.checks, tv.checks.c.state.in_(["assigned", "running"])),
        (task_copies, task_copies.c.state == speculation.RUNNING),
    )
    with rt.engine.begin() as conn:
        extended = sum(
            conn.execute(
                update(table).where(live, table.c.deadline < until).values(deadline=until)
            ).rowcount
            for table, live in held
        )
    if extended:
        log.info("resumed: %d tasks, checks and copies have one TTL to check in", extended)


def tick(rt: Runtime) -> None:
    """One pass of every periodic duty; safe to run from several coordinators at once."""
    for duty in duties():
        # one failing duty (the chain node down, say) must not stall the others
        try:
            duty(rt)
        except Exception:
            log.exception("duty %s failed", getattr(duty, "__name__", duty))
    wake_for_extras(rt)


def wake_for_extras(rt: Runtime) -> None:
    """Wake idle long polls while any challenge, check or bisection query waits for its
    agent: duties create those for one agent at a time, and an idle poll looks again
    only when woken (a network with none of them pending wakes nobody here)."""
    from gpudepin.coordinator import verification_http

    with rt.reader.connect() as conn:
        if verification_http.extras_pending(conn):
            rt.work.notify()


def duties() -> list[Callable[[Runtime], None]]:
    """The periodic duties, in order; a new domain adds its own here."""
    from gpudepin.coordinator.api_ai import endpoint_duty
    from gpudepin.coordinator.artifacts import storage_duty
    from gpudepin.coordinator.disputes_duty import dispute_duty
    from gpudepin.coordinator.lease_sla import probe_duty as lease_probe_duty
    from gpudepin.coordinator.speculation import straggler_duty
    from gpudepin.coordinator.upkeep import statistics_duty
    from gpudepin.coordinator.verification_duty import verification_duty
    from gpudepin.dashboard.history import sample_stats

    return [
        verification_duty,
        dispute_duty,
        expire_and_merge,
        straggler_duty,
        storage_duty,
        enterprise.sla_duty,
        settlement.settle,
        sample_stats,
        market.market_duty,
        lease_probe_duty,
        endpoint_duty,
        statistics_duty,
    ]


def expire_and_merge(rt: Runtime) -> None:
    """Requeue silent agents' tasks; merge and complete jobs whose tasks are all accepted."""
    now = rt.clock()
    with rt.engine.begin() as conn:
        if service.expire_assignments(conn, now):
            rt.notify_work()
    with rt.reader.connect() as conn:
        ready = service.jobs_ready_to_merge(conn)
    for job_id in ready:
        finish_job(rt, job_id)


def finish_job(rt: Runtime, job_id: str) -> None:
    """Merge a job's accepted results into its outputs and complete it."""
    with rt.reader.connect() as conn:
        job = service.get_job(conn, job_id)
        tasks = service.job_tasks(conn, job_id)
    try:
        workload = registry.get(job.kind)
        plans = [TaskPlan(t.label, t.spec) for t in tasks]
        shas = [t.result_sha256 for t in tasks]
        merge_bytes = getattr(workload, "merge_bytes", None)
        # tiny results handed in inline are in the database: read at once, not as files
        kept = rt.blobs.kept_bytes(shas) if merge_bytes is not None else {}
        with tempfile.TemporaryDirectory(dir=rt.blobs.root) as tmp:
            if merge_bytes is not None and len(kept) == len(set(shas)):
                files = merge_bytes(
                    job.spec, [(p, kept[h]) for p, h in zip(plans, shas, strict=True)], Path(tmp)
                )
            else:
                paths = [rt.blobs.open_path(h) for h in shas]
                files = workload.merge(job.spec, list(zip(plans, paths, strict=True)), Path(tmp))
            outputs = []
            for f in files:
                sha, size = rt.blobs.put_file(f)
                outputs.append({"name": f.name, "sha256": sha, "size": size})
    except (GpudepinError, OSError, RuntimeError) as exc:
        log.warning("merging job %s failed: %s", job_id, exc)
        with rt.engine.begin() as conn:
            service.fail_job(conn, job_id, f"merging outputs failed: {exc}", rt.clock())
        return
    # another coordinator may have completed it first
    with rt.engine.begin() as conn, contextlib.suppress(GpudepinError):
        service.complete_job(conn, job_id, outputs, rt.clock())
    from gpudepin.coordinator import artifacts

    try:  # large outputs go to providers' disks too; the job is done either way
        artifacts.store_outputs(rt, job_id, outputs)
    except (GpudepinError, OSError) as exc:
        log.warning("sharding the outputs of job %s failed: %s", job_id, exc)


def run_forever(rt: Runtime, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            tick(rt)
        except Exception:  # the loop must outlive a bad pass (a DB restart, say)
            log.exception("background pass failed")
        stop.wait(rt.settings.loop_interval_s)
