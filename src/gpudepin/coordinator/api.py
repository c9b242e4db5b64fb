"""The ``/v1`` routes. Handlers are thin: parse, authorise, call ``service``, shape JSON."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.background import BackgroundTask

from gpudepin import API_VERSION, INLINE_RESULT_BYTES, __version__
from gpudepin.coordinator import (
    ai,
    artifacts,
    auth,
    db,
    dispatch,
    enterprise,
    market,
    market_leases,
    results,
    schemas,
    service,
    settlement,
    store,
    verification_http,
)
from gpudepin.coordinator.app import Runtime
from gpudepin.coordinator.blobs import check_sha256
from gpudepin.core.errors import (
    Forbidden,
    GpudepinError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from gpudepin.core.money import format_amount, parse_amount
from gpudepin.identity import recover_signer, result_message
from gpudepin.workloads import registry

router = APIRouter(prefix="/v1")


async def runtime(request: Request) -> Runtime:
    """The app's shared state. ``async`` on purpose: FastAPI runs a plain ``def``
    dependency in its thread pool, a thread hop on every request for one attribute."""
    rt: Runtime = request.app.state.rt
    return rt


async def caller(request: Request, rt: Runtime = Depends(runtime)) -> str:
    """The address of the signed-in caller (bearer session).

    Sessions are never revoked before they expire, so a token seen once is answered
    from memory until its expiry: the hottest check of the API costs no query.
    """
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthorized("this call needs a session", hint="Log in with a signed challenge.")
    token = header[7:].strip()
    known: dict[str, tuple[str, float]] = rt.caches.setdefault("sessions", {})
    hit = known.get(token)
    now = rt.clock()
    if hit is not None and hit[1] >= now:
        return hit[0]

    def lookup() -> tuple[str, float]:
        with rt.reader.connect() as conn:
            return auth.session(conn, token, now)

    address, expires = await run_in_threadpool(lookup)
    if len(known) > 100_000:  # a bound, not an eviction policy: the map refills as used
        known.clear()
    known[token] = (address, expires)
    return address


# ---- identity -------------------------------------------------------------------------


@router.get("/health")
def health() -> dict[str, Any]:
    return {"ok": True, "api_version": API_VERSION, "version": __version__}


@router.post("/auth/challenge")
def challenge(
    body: schemas.ChallengeIn, request: Request, rt: Runtime = Depends(runtime)
) -> dict[str, str]:
    with rt.engine.begin() as conn:
        msg = auth.create_challenge(
            conn, body.address, request.url.netloc, str(request.base_url), rt.clock()
        )
    return {"message": msg}


@router.post("/auth/login")
def login(body: schemas.LoginIn, rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        token, address, expires = auth.login(
            conn, body.message, body.signature, rt.clock(), rt.settings.session_ttl_s
        )
    return {"token": token, "address": address, "expires_at": expires, "api_version": API_VERSION}


# ---- blobs ----------------------------------------------------------------------------


@router.put("/blobs", status_code=201)
async def upload(
    request: Request, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    size_header = request.headers.get("content-length")
    if size_header and int(size_header) > rt.settings.max_upload_bytes:
        raise PayloadTooLarge(
            f"upload of {size_header} bytes is over the limit of {rt.settings.max_upload_bytes}"
        )
    writer = rt.blobs.writer()
    try:
        async for chunk in request.stream():
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    sha, size = writer.commit()
    await run_in_threadpool(_record_blob, rt, sha, who, size)
    return {"sha256": sha, "size": size}


def _record_blob(rt: Runtime, sha: str, who: str, size: int) -> None:
    with rt.engine.begin() as conn:
        store.note_blobs(conn, who, {sha: size}, rt.clock())


def _inline_bytes(body: schemas.ResultIn, sha: str) -> bytes | None:
    """The bytes of a result sent inline, checked against its sha256; None when it was
    uploaded beforehand."""
    if body.content_b64 is None:
        return None
    try:
        data = base64.b64decode(body.content_b64, validate=True)
    except binascii.Error as exc:
        raise InvalidInput("content_b64 is not base64", field="content_b64") from exc
    if len(data) > INLINE_RESULT_BYTES:
        raise PayloadTooLarge(
            f"an inline result holds at most {INLINE_RESULT_BYTES} bytes",
            hint="Upload it with PUT /v1/blobs and submit its sha256.",
        )
    if hashlib.sha256(data).hexdigest() != sha:
        raise InvalidInput("content_b64 does not hash to sha256", field="content_b64")
    return data


def _owned_blob(conn: Any, sha: str, owner: str) -> None:
    row = conn.execute(
        select(db.blobs.c.sha256).where(db.blobs.c.sha256 == sha, db.blobs.c.uploader == owner)
    ).first()
    if row is None:
        raise InvalidInput(f"no uploaded file {sha[:12]}… of yours", hint="Upload it first.")


# ---- jobs -----------------------------------------------------------------------------


def job_view(conn: Any, job: Any, with_events: bool = False) -> dict[str, Any]:
    tasks = service.job_tasks(conn, job.id)
    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.state] = counts.get(t.state, 0) + 1
    view: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "reason": job.reason,
        "buyer": job.buyer,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "price_per_task": format_amount(job.price_per_task),
        "escrow": format_amount(job.escrow),
        "spec": job.spec,
        "counts": counts,
        "outputs": job.outputs or [],
        "market": market.job_market(conn, job.id),
        "tasks": [
            {
                "id": t.id,
                "label": t.label,
                "state": t.state,
                "attempts": t.attempts,
                "provider": t.provider,
                "result_sha256": t.result_sha256,
                "price": format_amount(t.price),
            }
            for t in tasks
        ],
    }
    if with_events:
        view["events"] = [
            {"at": e.at, "kind": e.kind, "task_id": e.task_id, "actor": e.actor, **e.detail}
            for e in service.job_events(conn, job.id)
        ]
    return view


@router.post("/jobs", status_code=201)
def submit_job(
    body: schemas.JobIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    workload = registry.get(body.kind)
    price = parse_amount(body.price_per_task)
    # optional inputs (an ONNX model or texts, a resume checkpoint) are the workload's call
    required = getattr(workload, "required_inputs", workload.input_names)
    missing = set(required) - set(body.inputs)
    if missing:
        raise InvalidInput(f"missing input file(s): {', '.join(sorted(missing))}")
    unknown = set(body.inputs) - set(workload.input_names)
    if unknown:
        raise InvalidInput(
            f"{sorted(unknown)[0]}: not an input of a {body.kind} job",
            hint=f"Its inputs: {', '.join(workload.input_names) or 'none'}.",
            field=sorted(unknown)[0],
        )
    with rt.reader.connect() as conn:
        for sha in body.inputs.values():
            _owned_blob(conn, check_sha256(sha), who)
    paths = {name: rt.blobs.open_path(sha) for name, sha in body.inputs.items()}
    spec = workload.validate(body.params, paths)
    plans = workload.split(spec)
    terms = enterprise.parse_terms(body.residency, body.tier, body.deadline_s)
    with rt.reader.connect() as conn:
        enterprise.check_placeable(conn, terms, rt.settings, rt.clock())
    with rt.engine.begin() as conn:
        job_id = service.create_job(
            conn,
            buyer=who,
            kind=body.kind,
            spec=spec,
            inputs=body.inputs,
            price_per_task=price,
            plans=plans,
            max_attempts=body.max_attempts,
            now=rt.clock(),
        )
        enterprise.attach_terms(conn, job_id, terms, rt.clock())
        if rt.settings.market:  # the job becomes an order; only its winners may claim
            market.open_for_job(conn, rt.settings, job_id, who, body, terms, plans, rt.clock())
    rt.notify_work(None if rt.settings.market else len(plans))  # an auction tells bidders
    with rt.reader.connect() as conn:
        return job_view(conn, service.get_job(conn, job_id))


@router.get("/jobs")
def list_jobs(who: str = Depends(caller), rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    with rt.reader.connect() as conn:
        return [
            {
                "id": j.id,
                "kind": j.kind,
                "state": j.state,
                "created_at": j.created_at,
                "escrow": format_amount(j.escrow),
                "reason": j.reason,
            }
            for j in service.list_jobs(conn, who)
        ]


@router.get("/jobs/{job_id}")
def show_job(
    job_id: str, events: bool = False, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        return job_view(conn, service.get_job(conn, job_id, viewer=who), with_events=events)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        service.cancel_job(conn, who, job_id, rt.clock())
    with rt.reader.connect() as conn:
        return job_view(conn, service.get_job(conn, job_id))


@router.get("/jobs/{job_id}/outputs/{name}")
def job_output(
    job_id: str, name: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> FileResponse:
    with rt.reader.connect() as conn:
        job = service.get_job(conn, job_id, viewer=who)
    for out in job.outputs or []:
        if out["name"] == name and rt.blobs.exists(out["sha256"]):
            return FileResponse(rt.blobs.open_path(out["sha256"]), filename=name)
        if out["name"] == name:  # no coordinator copy: rebuild it from k shards
            path = artifacts.read(rt, out["sha256"])
            return FileResponse(path, filename=name, background=BackgroundTask(path.unlink))
    raise NotFound(f"job {job_id} has no output {name!r}", hint="See `gpudepin jobs show ID`.")


@router.get("/jobs/{job_id}/tasks/{task_id}/result")
def task_result(
    job_id: str, task_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> FileResponse:
    with rt.reader.connect() as conn:
        service.get_job(conn, job_id, viewer=who)
        task = service.get_task(conn, task_id)
    if task.job_id != job_id or task.state != "accepted":
        raise NotFound(f"task {task_id} has no accepted result")
    return FileResponse(rt.blobs.open_path(task.result_sha256), filename=f"{task_id}.result")


# ---- providers ------------------------------------------------------------------------


@router.get("/providers")
def list_providers(rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    now = rt.clock()
    with rt.reader.connect() as conn:
        done = service.provider_task_counts(conn)
        held = market_leases.holding(conn)  # GPUs a lease holds are not free for work
        return [
            {
                "address": p.address,
                "name": p.name,
                "region": p.region,
                "operator": p.operator,
                "gpu_class": p.gpu_class,
                "hardware": p.hardware,
                "last_seen": p.last_seen,
                "online": now - p.last_seen < rt.settings.assignment_ttl_s,
                "tasks_done": done.get(p.address, 0),
                "leases": held.get(p.address, []),
            }
            for p in service.list_providers(conn)
        ]


@router.post("/providers/register")
def register(
    body: schemas.RegisterIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        service.register_provider(
            conn,
            who,
            body.name,
            body.region,
            body.operator,
            body.hardware,
            body.agent_version,
            rt.clock(),
        )
        verification_http.on_registered(rt, conn, who)
    return {"address": who, "registered": True, "assignment_ttl_s": rt.settings.assignment_ttl_s}


@router.post("/providers/heartbeat")
async def heartbeat(
    body: schemas.HeartbeatIn | None = None,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Mark the agent alive and keep the tasks it names (all it holds, without a list)."""
    return await rt.quick(_heartbeat, rt, who, body)


def _heartbeat(rt: Runtime, who: str, body: schemas.HeartbeatIn | None) -> dict[str, Any]:
    now, ttl = rt.clock(), rt.settings.assignment_ttl_s
    with rt.engine.begin() as conn:
        held = service.heartbeat(conn, who, None if body is None else body.held, now, ttl)
        enterprise.note_alive(conn, who, now, rt.settings.uptime_max_gap_s)
        shards = artifacts.holder_duties(conn, who, rt.blobs)  # store/send/drop shards
    return {"ok": True, "tasks_held": held, "shards": shards}


@router.post("/providers/poll")
async def poll(
    wait: float = 0.0,
    max_tasks: int = Query(1, ge=1, le=32),
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Long-poll for work: returns at once with some, or after ``wait`` seconds with none.

    ``task`` is the first item; ``tasks`` holds up to ``max_tasks`` job tasks claimed
    together (an agent with free slots, or one running many tiny tasks, prefetches them;
    each keeps its own deadline, extended by heartbeats). A hardware proof, check or
    bisection query always comes alone.

    The wait holds no thread and runs no query: the poll sleeps on the event loop until
    new work is announced in this process (work announced by another coordinator
    sharing the database is found by the agent's next poll, ``wait`` seconds later).
    """
    deadline = rt.clock() + max(0.0, min(wait, rt.settings.long_poll_s))
    while True:
        generation = rt.work.generation
        tasks = await dispatch.claim_for(rt, who, max_tasks)
        if tasks:
            return {"task": tasks[0], "tasks": tasks}
        remaining = deadline - rt.clock()
        # an idle poll looks again only when woken: a thousand of them re-checking on a
        # timer kept the coordinator busy finding nothing; work nobody announced here
        # (another coordinator's) is found by the agent's next poll
        if remaining <= 0 or not await rt.work.wait(generation, remaining, max_tasks):
            return {"task": None}


@router.get("/tasks/{task_id}/inputs/{name}")
def task_input(
    task_id: str, name: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> FileResponse:
    if verification_http.verification.is_check_id(task_id):
        return FileResponse(
            rt.blobs.open_path(verification_http.check_input(rt, task_id, who, name)), filename=name
        )
    with rt.reader.connect() as conn:
        task = service.require_assigned(conn, task_id, who)
        job = service.get_job(conn, task.job_id)
        sha = job.inputs.get(name) or ai.task_input_sha(conn, task_id, name)
    if sha is None:
        raise NotFound(f"task {task_id} has no input {name!r}")
    return FileResponse(rt.blobs.open_path(sha), filename=name)


@router.post("/tasks/{task_id}/result")
async def submit_result(
    task_id: str, body: schemas.ResultIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    sha = _signed_sha(task_id, body, who)
    if verification_http.verification.is_check_id(task_id):
        state = await run_in_threadpool(_submit_check, rt, task_id, body, sha, who)
        return {"task_id": task_id, "state": state, "reason": None}
    answer = (await _hand_in(rt, who, [(task_id, body, sha)]))[task_id]
    if isinstance(answer, GpudepinError):
        raise answer
    return answer


def _submit_check(rt: Runtime, check_id: str, body: schemas.ResultIn, sha: str, who: str) -> str:
    inline = _inline_bytes(body, sha)
    if inline is not None:  # checks are few: a file each, as an upload
        rt.blobs.put_bytes(inline)
        _record_blob(rt, sha, who, len(inline))
    with rt.reader.connect() as conn:
        _owned_blob(conn, sha, who)
    return verification_http.submit_check(rt, check_id, who, sha, body.signature)


@router.post("/tasks/results")
async def submit_results(
    body: schemas.ResultsIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Several tasks' results in one call, written in one transaction.

    Each is judged on its own: one that is refused (not yours, badly signed, ...) gets its
    error in its place and the others still count. An agent running many tiny tasks
    saves a round trip and a transaction per task; checks go through the single route.
    """
    ids = [r.task_id for r in body.results]
    if len(set(ids)) != len(ids):
        raise InvalidInput("a task appears twice in the batch", field="results")
    if sum(len(r.content_b64 or "") for r in body.results) > BATCH_INLINE_B64:
        raise PayloadTooLarge(
            f"the batch carries over {BATCH_INLINE_B64} bytes of inline results",
            hint="Upload the larger results with PUT /v1/blobs, or send fewer at once.",
        )
    answers: dict[str, dict[str, Any]] = {}
    signed: list[tuple[str, schemas.ResultIn, str]] = []
    for item in body.results:
        try:
            if verification_http.verification.is_check_id(item.task_id):
                raise InvalidInput(
                    f"{item.task_id} is a check", hint="Submit checks one at a time."
                )
            signed.append((item.task_id, item, _signed_sha(item.task_id, item, who)))
        except GpudepinError as exc:
            answers[item.task_id] = {"task_id": item.task_id, **exc.to_dict()}
    for task_id, answer in (await _hand_in(rt, who, signed)).items():
        if isinstance(answer, GpudepinError):
            answer = {"task_id": task_id, **answer.to_dict()}
        answers[task_id] = answer
    return {"results": [answers[i] for i in ids]}


BATCH_INLINE_B64 = 4 * 1024 * 1024
# results judged on the event loop when all came inline and hold at most this many bytes
# of base64 together (tiny outputs: the workload's check reads little); larger ones, and
# uploaded files, are judged in the thread pool
QUICK_JUDGE_B64 = 256 * 1024


def _signed_sha(task_id: str, body: schemas.ResultIn, who: str) -> str:
    sha = check_sha256(body.sha256)
    if recover_signer(result_message(task_id, sha), body.signature) != who:
        raise Forbidden("the result's signature is not yours", hint="Sign with the agent's key.")
    return sha


Answer = dict[str, Any] | GpudepinError
Claimed = tuple[str, schemas.ResultIn, str, Any, Any]  # task id, body, sha256, task, job


async def _hand_in(
    rt: Runtime, who: str, signed: list[tuple[str, schemas.ResultIn, str]]
) -> dict[str, Answer]:
    """Judge signed results (``task id, body, sha256`` each) and record those that pass
    in one write transaction; each task id maps to its answer or to its error."""
    out: dict[str, Answer] = {}
    claimed = await rt.quick(_claimed, rt, who, signed, out)
    small = sum(len(b.content_b64 or "") for _, b, _, _, _ in claimed) <= QUICK_JUDGE_B64
    if small and all(b.content_b64 is not None for _, b, _, _, _ in claimed):
        ready = _judge(rt, claimed, out)
    else:
        ready = await run_in_threadpool(_judge, rt, claimed, out)
    if ready:
        states = await rt.quick(_record, rt, who, ready)
        for r in ready:
            state = states[r.task_id]
            out[r.task_id] = (
                state
                if isinstance(state, GpudepinError)
                else {"task_id": r.task_id, "state": state, "reason": r.rejection}
            )
    # a rejected result puts its task back in the queue; a refused one (not yours, a lost
    # race) changes nothing, and waking every idle poll for it made a storm of probes
    if any(not isinstance(a, GpudepinError) and a["state"] == "rejected" for a in out.values()):
        rt.notify_work()
    return out


def _claimed(
    rt: Runtime, who: str, signed: list[tuple[str, schemas.ResultIn, str]], out: dict[str, Answer]
) -> list[Claimed]:
    """The signed results whose task ``who`` may hand in, with the task and job rows;
    the refusals go to ``out``."""
    claimed = []
    with rt.reader.connect() as conn:
        mine = results.assigned(conn, who, [task_id for task_id, _, _ in signed])
        for task_id, body, sha in signed:
            try:
                task, job = mine.get(task_id) or _copy_holder(conn, task_id, who)
                if body.content_b64 is None:
                    _owned_blob(conn, sha, who)
                claimed.append((task_id, body, sha, task, job))
            except GpudepinError as exc:
                out[task_id] = exc
    return claimed


def _judge(rt: Runtime, claimed: list[Claimed], out: dict[str, Answer]) -> list[results.Submission]:
    """Decode inline results and run the workload's check on each (it may read files)."""
    ready = []
    for task_id, body, sha, task, job in claimed:
        try:
            inline = _inline_bytes(body, sha)
            rejection = _check_result(rt, job, task, sha, inline)
        except GpudepinError as exc:
            out[task_id] = exc
            continue
        ready.append(
            results.Submission(
                task_id, sha, body.signature, body.meta, inline, rejection, task, job
            )
        )
    return ready


def _record(
    rt: Runtime, who: str, ready: list[results.Submission]
) -> dict[str, str | GpudepinError]:
    # a straggler's result and its copy's lock the same tasks: the rare deadlock between
    # two batches is broken by PostgreSQL aborting one, which then runs again (record_in)
    return results.record_in(rt.engine, who, ready, rt.settings.fee_bps, rt.clock())


def _copy_holder(conn: Any, task_id: str, who: str) -> tuple[Any, Any]:
    """The task ``who`` runs a speculative copy of, with its job; Forbidden (or NotFound)
    with the reason when ``who`` may not hand in a result for it."""
    task = service.require_assigned(conn, task_id, who)
    return task, service.get_job(conn, task.job_id)


@router.post("/tasks/{task_id}/fail")
def fail_task(
    task_id: str, body: schemas.FailIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """A provider gives a task back because it could not run it; the task is retried."""
    if verification_http.verification.is_check_id(task_id):
        state = verification_http.fail_check(rt, task_id, who, body.reason)
        return {"task_id": task_id, "state": state}
    with rt.engine.begin() as conn:
        state = service.give_back(conn, who, task_id, body.reason, rt.clock())
    rt.notify_work()
    return {"task_id": task_id, "state": state}


def _check_result(rt: Runtime, job: Any, task: Any, sha: str, inline: bytes | None) -> str | None:
    """The workload's own sanity check of a result (the verification issue goes further):
    of the bytes of one handed in inline where the workload can check bytes (those are
    kept in the database with the result), else of its file, written out if need be."""
    workload = registry.get(job.kind)
    check_bytes = getattr(workload, "check_bytes", None)
    if inline is not None and check_bytes is not None:
        reason: str | None = check_bytes(job.spec, task.spec, inline)
        return reason
    check = getattr(workload, "check_result", None)
    if check is None:
        return None
    # bytes written out just now are there: looking for them again is a stat per result
    path = rt.blobs.path(rt.blobs.put_bytes(inline)) if inline is not None else None
    reason = check(job.spec, task.spec, path or rt.blobs.open_path(sha))
    return reason


# ---- wallet and ledger ----------------------------------------------------------------


def _wallet_view(conn: Any, who: str) -> dict[str, Any]:
    return {"address": who, **{k: format_amount(v) for k, v in service.wallet(conn, who).items()}}


@router.get("/wallet")
def wallet(who: str = Depends(caller), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        return _wallet_view(conn, who)


@router.post("/wallet/faucet")
def faucet(
    body: schemas.AmountIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    if not rt.settings.faucet:
        raise Forbidden("this network has no faucet", hint="Deposit real tokens on chain.")
    if rt.chain is not None:  # an off-chain credit would leave the vault short
        raise Forbidden(
            "this network settles on chain: deposits go through the vault",
            hint="Use `gpudepin wallet deposit AMOUNT` (it uses the local chain's faucet).",
        )
    amount = parse_amount(body.amount)
    if amount > parse_amount("1000000"):
        raise InvalidInput("the faucet gives at most 1,000,000 test tokens at a time")
    with rt.engine.begin() as conn:
        service.faucet(conn, who, amount, rt.clock())
        return _wallet_view(conn, who)


@router.post("/wallet/withdraw")
def withdraw(
    body: schemas.WithdrawIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        if rt.chain is not None:  # on chain a withdrawal is claimed after the next epoch
            settlement.request_withdrawal(
                conn, who, body.source, parse_amount(body.amount), rt.clock()
            )
        else:
            service.withdraw(conn, who, body.source, parse_amount(body.amount), rt.clock())
        return _wallet_view(conn, who)


@router.get("/ledger/summary")
def ledger_summary(rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        s = service.ledger_summary(conn)
    return {
        "totals": {k: format_amount(v) for k, v in s["totals"].items()},
        "balanced": not s["problems"],
        "problems": s["problems"],
    }


@router.get("/ledger/balances")
def ledger_balances(rt: Runtime = Depends(runtime)) -> dict[str, str]:
    """Every account's balance in base units, for audits (the ledger is public)."""
    with rt.reader.connect() as conn:
        return {k: str(v) for k, v in store.all_balances(conn).items()}
