"""File work of training audits: serving the segment's checkpoint, judging a segment
replay, refereeing the last disputed step. Each decision is then applied in a
transaction of its own (as in ``verification_duty``).

A training task's audit replays one seeded random segment between two consecutive
checkpoints (``training.pick_segment``, drawn in ``verification._audit_spec``): the
auditor starts from the provider's own checkpoint of the segment's start (extracted from
its result archive on the first claim) and commits the state it reaches at the end. Equal
commitments accept the result; different ones open a bisection (``disputes``).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from gpudepin.coordinator import disputes, service, verification
from gpudepin.coordinator import tables_verification as tv
from gpudepin.core import disputes as D
from gpudepin.core import verification as V
from gpudepin.core.errors import GpudepinError
from gpudepin.workloads import training

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.disputes")


def _case_of_check(rt: Runtime, check_id: str) -> Any:
    with rt.reader.connect() as conn:
        chk = conn.execute(select(tv.checks).where(tv.checks.c.id == check_id)).one()
        return conn.execute(select(tv.cases).where(tv.cases.c.id == chk.case_id)).one()


def prepare_check(rt: Runtime, item: dict[str, Any] | None) -> dict[str, Any] | None:
    """A segment check past step 0 gets the provider's checkpoint of the segment's start as
    input ``checkpoint``; if the result lacks it (a resumed run keeps only its own), the
    check replays from step 0 to the segment's end instead."""
    seg = (item or {}).get("task_spec", {}).get("segment") if item and item.get("check") else None
    if item is None or item.get("kind") != "train" or not seg or seg[0] == 0:
        return item
    case = _case_of_check(rt, item["id"])
    spec = dict(case.spec)
    sha = spec.get("checkpoint_sha256")
    if sha is None and "segment" in spec and spec["segment"][0] > 0:
        sha = _extract(rt, case.result_sha256, spec["segment"][0])
        spec = training.segment_task(0, spec["segment"][1]) if sha is None else spec
        if sha is not None:
            spec["checkpoint_sha256"] = sha
        with rt.engine.begin() as conn:
            conn.execute(update(tv.cases).where(tv.cases.c.id == case.id).values(spec=spec))
    inputs = dict(item["inputs"]) | ({"checkpoint": sha} if sha else {})
    return {**item, "task_spec": spec, "inputs": inputs}


def _extract(rt: Runtime, result_sha: str, step: int) -> str | None:
    try:
        with tempfile.TemporaryDirectory(dir=rt.blobs.root) as tmp:
            path = training.extract_checkpoint(rt.blobs.open_path(result_sha), step, Path(tmp))
            sha, _ = rt.blobs.put_file(path)
            return str(sha)
    except (GpudepinError, OSError) as exc:
        log.info("no checkpoint of step %s in %s: %s", step, result_sha[:12], exc)
        return None


def segment_checkpoint(rt: Runtime, check_id: str) -> str | None:
    """The checkpoint a segment check replays from, for the check's input download."""
    sha = (_case_of_check(rt, check_id).spec or {}).get("checkpoint_sha256")
    return None if sha is None else str(sha)


def _anchor_hash(rt: Runtime, job: Any, spec: dict[str, Any]) -> str:
    if spec.get("checkpoint_sha256"):
        path = rt.blobs.open_path(spec["checkpoint_sha256"])
        return training.commitment(training.load_checkpoint(path))
    return training.commitment(training.initial_state(job.spec))


def decide_segment(rt: Runtime, case_id: str) -> str | None:
    """Judge a segment replay: accept on equal commitments, else open a dispute. None when
    the case is not a segment audit or nothing readable came back (the normal ruling,
    with its referees, takes over)."""
    with rt.reader.connect() as conn:
        case, job, done = verification.case_inputs(conn, case_id)
    seg = (case.spec or {}).get("segment") if job.kind == "train" else None
    if not seg:
        return None
    start, end = int(seg[0]), int(seg[1])
    try:
        ours = training.commitments_of(rt.blobs.open_path(case.result_sha256))
    except (GpudepinError, OSError):
        return None
    replays, unreadable = [], []
    for chk in done:
        try:
            theirs = training.commitments_of(rt.blobs.open_path(chk.result_sha256))
        except (GpudepinError, OSError):
            theirs = {}
        if start in theirs and end in theirs:
            replays.append((chk, theirs))
        else:
            unreadable.append(chk.checker)
    if not replays:
        return None
    chk, theirs = replays[-1]
    mine = (ours.get(start), ours.get(end))
    their = (theirs[start], theirs[end])
    now = rt.clock()
    complete = set(ours) == set(training.checkpoint_steps(job.spec))
    if mine == their and complete:
        decision = V.Decision(V.Verdict.ACCEPTED, tuple(unreadable), f"steps {start}-{end} agree")
        details = {"segment": f"steps {start}-{end}: commitment {their[1][:12]} reproduced"}
        with rt.engine.begin() as conn:
            return verification.apply_decision(conn, rt.settings, case_id, decision, details, now)
    parties = (case.provider, chk.checker)
    if not complete:
        # submission refuses such results; one that got through cannot be audited
        d = D.Dispute(
            "",
            parties,
            start,
            their[0],
            end,
            (mine[1] or "", their[1]),
            phase=D.Phase.DECIDED,
            winner=chk.checker,
            loser=case.provider,
            reason="its result does not commit every checkpoint step",
        )
    elif mine[0] != their[0]:
        # the starting state itself is contested: the coordinator hashes the checkpoint it
        # served and rules at once
        real = _anchor_hash(rt, job, case.spec)
        losers = [p for p, h in zip(parties, (mine[0], their[0]), strict=True) if h != real]
        d = D.Dispute(
            "",
            parties,
            start,
            real,
            start,
            (mine[0] or "", their[0]),
            phase=D.Phase.DECIDED,
            winner=next((p for p in parties if p not in losers), None),
            loser=losers[0] if len(losers) == 1 else None,
            reason=f"the state at step {start} is not what {' and '.join(losers)} claimed",
        )
    else:
        d = D.open_interval("", parties, start, their[0], end, (ours[end], their[1]))
    anchor_sha = case.spec.get("checkpoint_sha256")
    with rt.engine.begin() as conn:
        disputes.open_for_case(conn, rt.settings, case, chk.checker, d, (start, anchor_sha), now)
    return "disputed"


def referee(rt: Runtime, row: Any) -> None:
    """The coordinator re-executes the one disputed step from the agreed state."""
    d = D.Dispute.from_json(row.body)
    with rt.reader.connect() as conn:
        job = service.get_job(conn, row.job_id)
    try:
        dataset = training.load_dataset(job.spec, rt.blobs.open_path(job.inputs["dataset"]))
        ckpt = rt.blobs.open_path(row.anchor_sha256) if row.anchor_sha256 else None
        agreed = training.state_at(job.spec, dataset, ckpt, row.anchor_step, d.lo)
        agreed_hash = training.commitment(agreed)
        after, _ = training.train_segment(job.spec, dataset, agreed, d.lo, d.hi)
    except (GpudepinError, OSError, RuntimeError) as exc:
        log.warning("cannot referee dispute %s here: %s", row.id, exc)
        return
    with rt.engine.begin() as conn:
        disputes.record_referee(conn, row.id, agreed_hash, training.commitment(after), rt.clock())


def dispute_duty(rt: Runtime) -> None:
    """Forfeit silent parties, referee disputes down to one step, apply the verdicts."""
    with rt.engine.begin() as conn:
        disputes.expire(conn, rt.clock())
    with rt.reader.connect() as conn:
        pending = disputes.awaiting_referee(conn)
    for row in pending:
        referee(rt, row)
    with rt.reader.connect() as conn:
        decided = disputes.decided_unapplied(conn)
    for dispute_id in decided:
        with rt.engine.begin() as conn:
            disputes.apply(conn, rt.settings, dispute_id, rt.clock())
    if decided:
        rt.notify_work()  # a rejected task is back in the queue
