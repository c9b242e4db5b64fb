"""AI workloads on SQL rows: training progress and resumes, hosted endpoints' lease checks.

A training task is one long sequential run. While it runs, its provider uploads the
newest checkpoint and the commitments so far (``record_progress``). If the provider dies,
the task goes back to the queue as any task does; when another provider claims it,
``resume_claim`` turns the claim into a resume: ``resume_from`` the last checkpointed
step, the checkpoint as input ``checkpoint`` and the earlier commitments carried along,
so the work continues from there and the commitments before it stay as published.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from gpudepin.coordinator import service, store
from gpudepin.coordinator import tables_ai as ta
from gpudepin.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from gpudepin.workloads.serving import SERVE_PREFIX, parse_serve

_SHA = re.compile(r"^[0-9a-f]{64}$")
__all__ = ["SERVE_PREFIX", "parse_serve"]  # re-exported for the routes
MAX_COMMITMENTS = 1_001  # training.MAX_CHECKPOINTS plus step 0


# ---- training progress ----------------------------------------------------------------


def _commitments(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or len(raw) > MAX_COMMITMENTS:
        raise InvalidInput(
            f"commitments: expected a list of at most {MAX_COMMITMENTS} entries",
            field="commitments",
        )
    out: list[dict[str, Any]] = []
    for entry in raw:
        step = entry.get("step") if isinstance(entry, dict) else None
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InvalidInput("commitments: each needs a step >= 0", field="commitments")
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise InvalidInput(
                "commitments: each needs a sha256 of 64 hex digits", field="commitments"
            )
        out.append({"step": step, "sha256": sha})
    return out


def progress_row(conn: Connection, task_id: str) -> Any | None:
    return conn.execute(
        select(ta.train_progress).where(ta.train_progress.c.task_id == task_id)
    ).first()


def record_progress(
    conn: Connection,
    provider: str,
    task_id: str,
    step: int,
    checkpoint_sha256: str,
    commitments: list[Any],
    now: float,
) -> dict[str, Any]:
    """Keep the newest checkpoint of a running training task and the commitments so far.

    Commitments of steps already on record must not change: a resumed run re-publishes
    its starting step, and it has to agree with what the dead provider published.
    """
    task = service.require_assigned(conn, task_id, provider)
    job = service.get_job(conn, task.job_id)
    if job.kind != "train":
        raise InvalidInput(f"task {task_id} is not a training task", field="task_id")
    new = _commitments(commitments)
    if not any(c["step"] == step for c in new):
        raise InvalidInput(
            f"step: no commitment for step {step}, the checkpoint's step", field="step"
        )
    if step > int(job.spec["steps"]):
        raise InvalidInput(f"step: {step} is past the job's {job.spec['steps']}", field="step")
    row = progress_row(conn, task_id)
    known = {int(c["step"]): c["sha256"] for c in (row.commitments if row else [])}
    for c in new:
        if known.get(c["step"], c["sha256"]) != c["sha256"]:
            raise Conflict(
                f"commitments: step {c['step']} differs from the one on record",
                hint="A resumed run must reproduce the commitments it started from.",
            )
        known[c["step"]] = c["sha256"]
    merged = [{"step": s, "sha256": known[s]} for s in sorted(known)]
    values = dict(
        provider=provider,
        step=step,
        checkpoint_sha256=checkpoint_sha256,
        commitments=merged,
        updated_at=now,
    )
    if row is None:
        conn.execute(
            insert(ta.train_progress).values(task_id=task_id, job_id=task.job_id, **values)
        )
    elif step >= row.step:
        conn.execute(
            update(ta.train_progress).where(ta.train_progress.c.task_id == task_id).values(**values)
        )
    store.record(
        conn, now, "train_progress", job_id=task.job_id, task_id=task_id, actor=provider, step=step
    )
    return {"task_id": task_id, "step": max(step, row.step if row else 0), "commitments": merged}


def resume_claim(conn: Connection, claim: dict[str, Any]) -> dict[str, Any]:
    """A claimed training task that ran before becomes a resume from its last checkpoint."""
    if claim.get("kind") != "train":
        return claim
    row = progress_row(conn, claim["id"])
    if row is None or row.step <= 0:
        return claim
    spec = {**claim["task_spec"], "resume_from": row.step, "prior_commitments": row.commitments}
    inputs = {**claim["inputs"], "checkpoint": row.checkpoint_sha256}
    return {**claim, "task_spec": spec, "inputs": inputs}


def resume_claims(reader: Engine, claims: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``resume_claim`` for each of a poll's claims; reads only when one is training."""
    if not any(c.get("kind") == "train" for c in claims):
        return claims
    with reader.connect() as conn:
        return [resume_claim(conn, c) for c in claims]


def task_input_sha(conn: Connection, task_id: str, name: str) -> str | None:
    """Inputs a task has beyond its job's: a resumed training task's checkpoint."""
    if name != "checkpoint":
        return None
    row = progress_row(conn, task_id)
    return None if row is None else str(row.checkpoint_sha256)


def job_progress(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    """Each training task's last checkpointed step, who ran it and the commitments so far."""
    q = select(ta.train_progress).where(ta.train_progress.c.job_id == job_id)
    return [
        {
            "task_id": r.task_id,
            "step": r.step,
            "provider": r.provider,
            "checkpoint_sha256": r.checkpoint_sha256,
            "commitments": r.commitments,
            "updated_at": r.updated_at,
        }
        for r in conn.execute(q)
    ]


# ---- hosted endpoints -------------------------------------------------------------------


def check_serve(conn: Connection, workload: str, buyer: str) -> None:
    """Refuse a lease whose endpoint cannot be served (unknown model, a file not yours)."""
    serve = parse_serve(workload)
    if serve is None or serve["kind"] != "onnx":
        return
    from gpudepin.coordinator import db

    owned = conn.execute(
        select(db.blobs.c.sha256).where(
            db.blobs.c.sha256 == serve["model"], db.blobs.c.uploader == buyer
        )
    ).first()
    if owned is None:
        raise InvalidInput(
            f"workload: no uploaded model {serve['model'][:12]}… of yours",
            hint="Upload the .onnx file first (the CLI's --serve model.onnx does).",
            field="workload",
        )


def lease_facts(conn: Connection, lease_id: str) -> dict[str, Any]:
    """Buyer, provider, state and what is served, of a lease (the gateway caches these),
    and the live leases of its replicas."""
    from gpudepin.coordinator import lease_replicas
    from gpudepin.coordinator import tables_market as tm

    row = conn.execute(select(tm.leases).where(tm.leases.c.id == lease_id)).first()
    # the buyer's address names the order, and the order's newest lease serves it: after
    # a failover or a re-award the same address reaches the new provider
    row = (
        conn.execute(
            select(tm.leases)
            .where(tm.leases.c.order_id == (lease_id if row is None else row.order_id))
            .order_by(tm.leases.c.awarded_at.desc(), tm.leases.c.id.desc())
        ).first()
        or row
    )
    if row is None:
        raise NotFound(f"no lease {lease_id}", hint="A lease appears once its auction cleared.")
    return {
        "id": row.id,
        "buyer": row.buyer,
        "provider": row.provider,
        "state": row.state,
        "serve": parse_serve(row.workload or ""),
        "order_id": row.order_id,
        "replicas": lease_replicas.live_replicas(conn, row.order_id),
    }


def require_party(facts: dict[str, Any], who: str, role: str) -> None:
    if facts[role] != who:
        raise Forbidden(
            f"lease {facts['id']} is not {'yours' if role == 'buyer' else 'run by you'}"
        )


def save_endpoint_stats(
    conn: Connection, lease_id: str, requests: int, errors: int, latency_ms: list[float], now: float
) -> None:
    values = dict(requests=requests, errors=errors, latency_ms=latency_ms, updated_at=now)
    res = conn.execute(
        update(ta.lease_endpoints).where(ta.lease_endpoints.c.lease_id == lease_id).values(**values)
    )
    if not res.rowcount:
        conn.execute(insert(ta.lease_endpoints).values(lease_id=lease_id, **values))


def endpoint_stats(conn: Connection, lease_id: str) -> Any | None:
    return conn.execute(
        select(ta.lease_endpoints).where(ta.lease_endpoints.c.lease_id == lease_id)
    ).first()
