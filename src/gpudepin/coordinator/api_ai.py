"""Routes of the AI workloads: training progress, and the gateway of hosted endpoints.

Buyers: ``POST /v1/leases/{id}/invoke`` (the served model's own request format) and the
OpenAI-compatible ``POST /v1/leases/{id}/openai/v1/embeddings`` (bearer token as the API
key). Providers: ``GET /v1/leases/{id}/requests`` (long poll) and
``POST /v1/leases/{id}/responses/{rid}``; ``POST /v1/tasks/{id}/progress`` while training.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Body, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gpudepin.coordinator import ai, service
from gpudepin.coordinator.api import _owned_blob, caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.coordinator.blobs import check_sha256
from gpudepin.coordinator.gateway import Gateway, latency_figures
from gpudepin.core.errors import InvalidInput, NotFound, Unavailable

router = APIRouter(prefix="/v1")

FACTS_TTL_S = 1.0  # a closed lease stops taking requests within this long
MAX_POLL_S = 30.0


class ProgressIn(BaseModel):
    step: int = Field(ge=0)
    checkpoint_sha256: str = Field(max_length=64)
    commitments: list[dict[str, Any]] = Field(max_length=ai.MAX_COMMITMENTS)


class AnswerIn(BaseModel):
    body: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    compute_ms: float | None = None


def gateway(rt: Runtime) -> Gateway:
    gw = rt.caches.get("gateway")
    if gw is None:
        gw = rt.caches["gateway"] = Gateway(
            rt.settings.gateway_stale_s,
            rt.settings.gateway_timeout_s,
            rt.settings.gateway_hedge_floor_s,
        )
    return gw


def _facts_now(rt: Runtime, lease_id: str) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        return ai.lease_facts(conn, lease_id)


async def _facts(rt: Runtime, lease_id: str) -> dict[str, Any]:
    cache: dict[str, tuple[float, dict[str, Any]]] = rt.caches.setdefault("ai_lease_facts", {})
    hit = cache.get(lease_id)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    facts = await run_in_threadpool(_facts_now, rt, lease_id)
    if facts["state"] == "active":  # others change soon (a start) and are looked up again
        cache[lease_id] = (time.monotonic() + FACTS_TTL_S, facts)
    return facts


async def _served(rt: Runtime, lease_id: str, who: str) -> dict[str, Any]:
    facts = await _facts(rt, lease_id)
    ai.require_party(facts, who, "buyer")
    if facts["serve"] is None:
        raise InvalidInput(
            f"lease {facts['id']} serves no model",
            hint="Create the lease with --serve embeddings or --serve model.onnx.",
            field="lease_id",
        )
    if facts["state"] != "active" and not facts["replicas"]:
        if facts["state"] != "pending":
            gateway(rt).fail_all(facts["id"], Unavailable(f"lease {facts['id']} ended"))
        raise Unavailable(
            f"lease {facts['id']} is {facts['state']}: nothing serves it"
            + (" yet" if facts["state"] == "pending" else ""),
            hint="Wait for it to start"
            if facts["state"] == "pending"
            else "Create a new lease to serve the model again.",
        )
    return facts


async def _relay(rt: Runtime, facts: dict[str, Any], op: str, body: dict[str, Any]) -> Any:
    """One request to the endpoint: hedged across its replicas when it has several."""
    live = facts["replicas"]
    if len(live) > 1:
        return await gateway(rt).call_hedged(facts["order_id"], live, op, body)
    return await gateway(rt).call(live[0] if live else facts["id"], op, body)


# ---- buyers ---------------------------------------------------------------------------


@router.post("/leases/{lease_id}/invoke")
async def invoke(
    lease_id: str,
    payload: dict[str, Any] = Body(...),
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """One request to the lease's model, in its own format (see docs/ai.md)."""
    facts = await _served(rt, lease_id, who)
    return dict(await _relay(rt, facts, "invoke", payload))


@router.post("/leases/{lease_id}/openai/v1/embeddings")
async def openai_embeddings(
    lease_id: str,
    payload: dict[str, Any] = Body(...),
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """OpenAI's embeddings API: point the ``openai`` client's base_url here."""
    facts = await _served(rt, lease_id, who)
    if facts["serve"]["kind"] != "embeddings":
        raise InvalidInput(
            f"lease {facts['id']} serves an ONNX model, not embeddings",
            hint="Use POST /v1/leases/{id}/invoke.",
            field="model",
        )
    return dict(await _relay(rt, facts, "openai_embeddings", payload))


@router.get("/leases/{lease_id}/endpoint")
async def endpoint(
    lease_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """What the lease serves, whether it is ready, and its request latency (p50/p95/p99)."""
    facts = await _facts(rt, lease_id)
    if who not in (facts["buyer"], facts["provider"]):
        ai.require_party(facts, who, "buyer")
    view: dict[str, Any] = {
        "lease_id": facts["id"],
        "state": facts["state"],
        "serve": facts["serve"],
    }
    live = gateway(rt).status(facts["id"])
    if len(facts["replicas"]) > 1 or facts["order_id"] in gateway(rt).hedged:
        live = {**live, "replicas": facts["replicas"]}
        live["hedged_requests"] = gateway(rt).hedged.get(facts["order_id"], 0)
    if live.get("requests"):
        return {**view, **live}
    saved = await run_in_threadpool(_saved_stats, rt, facts["id"])
    return {**view, **live, **saved}


def _saved_stats(rt: Runtime, lease_id: str) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        row = ai.endpoint_stats(conn, lease_id)
    if row is None:
        return {"requests": 0, "errors": 0, **latency_figures([])}
    return {"requests": row.requests, "errors": row.errors, **latency_figures(list(row.latency_ms))}


# ---- providers --------------------------------------------------------------------------


@router.get("/leases/{lease_id}/requests")
async def take_requests(
    lease_id: str,
    wait: float = 0.0,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The serving agent's long poll: buyers' requests to answer, or none after ``wait``."""
    facts = await _facts(rt, lease_id)
    ai.require_party(facts, who, "provider")
    if facts["state"] not in ("pending", "active"):
        return {"requests": [], "state": facts["state"]}
    batch = await gateway(rt).take(facts["id"], min(max(wait, 0.0), MAX_POLL_S))
    return {"requests": batch, "state": facts["state"]}


@router.post("/leases/{lease_id}/responses/{rid}")
async def answer(
    lease_id: str,
    rid: str,
    body: AnswerIn,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    facts = await _facts(rt, lease_id)
    ai.require_party(facts, who, "provider")
    gateway(rt).answer(facts["id"], rid, body.body, body.error, body.compute_ms)
    return {"ok": True}


@router.get("/leases/{lease_id}/model")
def lease_model(
    lease_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> FileResponse:
    """The ONNX file an onnx endpoint serves, for the provider that serves it."""
    facts = _facts_now(rt, lease_id)
    ai.require_party(facts, who, "provider")
    if facts["serve"] is None or facts["serve"]["kind"] != "onnx":
        raise NotFound(f"lease {facts['id']} serves no model file")
    return FileResponse(rt.blobs.open_path(facts["serve"]["model"]), filename="model.onnx")


@router.post("/tasks/{task_id}/progress")
def task_progress(
    task_id: str, body: ProgressIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """A training task's newest checkpoint (uploaded first) and its commitments so far."""
    sha = check_sha256(body.checkpoint_sha256)
    with rt.engine.begin() as conn:
        _owned_blob(conn, sha, who)
        return ai.record_progress(conn, who, task_id, body.step, sha, body.commitments, rt.clock())


@router.get("/jobs/{job_id}/progress")
def job_progress(
    job_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """How far each training task got (its last uploaded checkpoint) and its commitments."""
    with rt.reader.connect() as conn:
        service.get_job(conn, job_id, viewer=who)
        return {"job_id": job_id, "tasks": ai.job_progress(conn, job_id)}


def endpoint_duty(rt: Runtime) -> None:
    """Write hosted endpoints' request figures to the database (for `lease show` later)."""
    gw = rt.caches.get("gateway")
    if gw is None:
        return
    changed = gw.dirty()
    if not changed:
        return
    with rt.engine.begin() as conn:
        for lease_id, requests, errors, latencies in changed:
            ai.save_endpoint_stats(conn, lease_id, requests, errors, latencies, rt.clock())
