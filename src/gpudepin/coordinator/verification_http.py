"""What the task routes of ``api.py`` ask of the trust layer: work that is not a job's
task (checks, hardware proofs) travels through the same poll, input and result routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, exists, or_, select

from gpudepin.coordinator import disputes, disputes_duty, hwproofs, verification
from gpudepin.coordinator import tables_disputes as td
from gpudepin.coordinator import tables_verification as tv
from gpudepin.core import disputes as D
from gpudepin.core.errors import NotFound

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime


def claim_extra(rt: Runtime, who: str) -> dict[str, Any] | None:
    """A hardware challenge, a check or a bisection query for ``who``, before any job
    task; the poll asks only when ``extras_waiting`` said one may wait."""
    now = rt.clock()
    with rt.engine.begin() as conn:
        item = hwproofs.claim(conn, who, now) or verification.claim_check(
            conn, who, now, rt.settings.assignment_ttl_s
        )
        item = item or disputes.claim_query(conn, who, now)  # bisection of a training run
    return disputes_duty.prepare_check(rt, item)  # a segment audit's starting checkpoint


def extras_waiting(who: Any) -> ColumnElement[bool]:
    """SQL: a challenge, a check or a bisection query may be waiting for ``who`` (an
    address or a bind parameter; for anyone, when None)."""
    hw, chk, dis = tv.hw_challenges.c, tv.checks.c, td.disputes.c
    challenge, check = [hw.state == "new"], [chk.state == "assigned"]
    if who is not None:
        challenge.append(hw.address == who)
        check.append(chk.checker == who)
    return or_(
        exists().where(*challenge),
        exists().where(*check),
        exists().where(dis.state == str(D.Phase.BISECTING)),
    )


def extras_pending(conn: Any) -> bool:
    """Whether any challenge, check or bisection query waits for its agent."""
    return bool(conn.execute(select(extras_waiting(None))).scalar())


def on_registered(rt: Runtime, conn: Any, who: str) -> None:
    """Challenge a newly registered (or re-registered) provider's hardware claim."""
    prov = verification._provider(conn, who)
    hwproofs.schedule(conn, who, prov.gpu_class, rt.clock(), rt.settings)


def check_input(rt: Runtime, check_id: str, who: str, name: str) -> str:
    with rt.reader.connect() as conn:
        _, job = verification.running_check(conn, check_id, who)
    sha = job.inputs.get(name)
    if sha is None and name == "checkpoint":
        sha = disputes_duty.segment_checkpoint(rt, check_id)
    if sha is None:
        raise NotFound(f"check {check_id} has no input {name!r}")
    return str(sha)


def submit_check(rt: Runtime, check_id: str, who: str, sha: str, signature: str) -> str:
    with rt.engine.begin() as conn:
        return verification.submit_check(conn, check_id, who, sha, signature, rt.clock())


def fail_check(rt: Runtime, check_id: str, who: str, reason: str) -> str:
    with rt.engine.begin() as conn:
        return verification.fail_check(conn, check_id, who, reason, rt.clock())
