"""Refereed bisection of a training segment, on SQL rows (docs/verification.md, "Training").

A segment audit whose end commitment disagrees with the provider's opens a dispute
(``core.disputes``) between the provider and its auditor. Each round both parties get a
``bisect`` item through their normal poll and answer, signed, with the state hash at the
queried step (``answer``); after at most ceil(log2(segment length)) rounds one step is left
and the coordinator re-executes it (``disputes_duty.referee``). A party that misses its
deadline forfeits (``expire``). The verdict goes through the verification case's normal
ruling (``verification.apply_decision``): the loser is slashed, a losing provider's pay
goes back to the buyer and its task is redone.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from gpudepin.coordinator import service, store, verification
from gpudepin.coordinator import tables_disputes as td
from gpudepin.coordinator import tables_verification as tv
from gpudepin.core import disputes as D
from gpudepin.core import verification as V
from gpudepin.core.errors import Forbidden, NotFound
from gpudepin.settings import CoordinatorSettings

PREFIX = "d"  # poll items and routes of disputes; checks use "v"
REFEREE = verification.COORDINATOR


def answer_window(settings: CoordinatorSettings) -> float:
    """How long a party has to answer a query: as long as an auditor has to start a check."""
    return max(3 * settings.assignment_ttl_s, settings.audit_wait_s)


def _row(conn: Connection, dispute_id: str) -> Any:
    row = conn.execute(select(td.disputes).where(td.disputes.c.id == dispute_id)).first()
    if row is None:
        raise NotFound(
            f"no dispute {dispute_id}", hint="See `gpudepin jobs show JOB --verification`."
        )
    return row


def _save(conn: Connection, row_id: str, d: D.Dispute, now: float, **values: Any) -> None:
    extra = {"decided_at": now} if d.phase is D.Phase.DECIDED else {}
    conn.execute(
        update(td.disputes)
        .where(td.disputes.c.id == row_id)
        .values(state=str(d.phase), body=d.to_json(), updated_at=now, **extra, **values)
    )


def open_for_case(
    conn: Connection,
    settings: CoordinatorSettings,
    case: Any,
    challenger: str,
    d: D.Dispute,
    anchor: tuple[int, str | None],
    now: float,
) -> str:
    """Persist a dispute over ``case`` and hold the case (and its job and pay) until it ends."""
    dispute_id = f"{PREFIX}{secrets.token_hex(8)}"
    d = replace(d, ref=dispute_id)
    conn.execute(
        insert(td.disputes).values(
            id=dispute_id,
            case_id=case.id,
            job_id=case.job_id,
            task_id=case.task_id,
            provider=case.provider,
            challenger=challenger,
            anchor_step=anchor[0],
            anchor_sha256=anchor[1],
            end_step=d.hi,
            state=str(d.phase),
            body=d.to_json(),
            asked=[],
            history=[],
            referee=None,
            deadline=now + answer_window(settings),
            created_at=now,
            updated_at=now,
            decided_at=now if d.phase is D.Phase.DECIDED else None,
        )
    )
    conn.execute(update(tv.cases).where(tv.cases.c.id == case.id).values(state="disputed"))
    store.record(
        conn,
        now,
        "dispute_opened",
        job_id=case.job_id,
        task_id=case.task_id,
        actor=challenger,
        dispute=dispute_id,
        interval=[d.lo, d.hi],
    )
    return dispute_id


def dispute_of(conn: Connection, dispute_id: str) -> D.Dispute:
    return D.Dispute.from_json(_row(conn, dispute_id).body)


def _party_index(d: D.Dispute, who: str) -> int | None:
    lowered = [p.lower() for p in d.parties]
    return lowered.index(who.lower()) if who.lower() in lowered else None


def claim_query(conn: Connection, who: str, now: float) -> dict[str, Any] | None:
    """The next bisection query for ``who``, shaped like a task for the agent's poll."""
    rows = conn.execute(
        select(td.disputes)
        .where(td.disputes.c.state == str(D.Phase.BISECTING))
        .order_by(td.disputes.c.created_at)
    ).all()
    for row in rows:
        d = D.Dispute.from_json(row.body)
        idx = _party_index(d, who)
        if idx is None or d.answers[idx] is not None or who.lower() in row.asked:
            continue
        conn.execute(
            update(td.disputes)
            .where(td.disputes.c.id == row.id)
            .values(asked=[*row.asked, who.lower()], updated_at=now)
        )
        job = service.get_job(conn, row.job_id)
        inputs = {"dataset": job.inputs["dataset"]}
        if row.anchor_sha256:
            inputs["checkpoint"] = row.anchor_sha256
        return {
            "id": row.id,
            "job_id": row.job_id,
            "kind": "bisect",
            "label": f"bisection of task {row.task_id}: state at step {d.query_step}",
            "job_spec": job.spec,
            "task_spec": {"step": d.query_step, "anchor_step": row.anchor_step},
            "inputs": inputs,
            "deadline": row.deadline,
        }
    return None


def require_party(conn: Connection, dispute_id: str, who: str) -> Any:
    """The dispute row, if ``who`` is one of its parties; Forbidden otherwise."""
    row = _row(conn, dispute_id)
    if who.lower() not in (row.provider.lower(), row.challenger.lower()):
        raise Forbidden(f"you are not a party to dispute {dispute_id}")
    return row


def input_sha(conn: Connection, dispute_id: str, who: str, name: str) -> str:
    """The blob a party downloads to replay: the job's dataset or the agreed checkpoint."""
    row = require_party(conn, dispute_id, who)
    if name == "checkpoint" and row.anchor_sha256:
        return str(row.anchor_sha256)
    if name == "dataset":
        return str(service.get_job(conn, row.job_id).inputs["dataset"])
    raise NotFound(f"dispute {dispute_id} has no input {name!r}")


def answer(
    conn: Connection,
    settings: CoordinatorSettings,
    dispute_id: str,
    who: str,
    step: int,
    state_hash: str,
    signature: str,
    now: float,
) -> dict[str, Any]:
    """Record a party's signed hash at the queried step; a complete round halves the interval."""
    row = require_party(conn, dispute_id, who)
    d = D.Dispute.from_json(row.body)
    party = d.parties[_party_index(d, who) or 0]
    nxt = D.submit(d, party, step, state_hash)
    history = list(row.history)
    if not history or history[-1]["step"] != step or history[-1].get("closed"):
        history.append({"step": step, "answers": {}, "signatures": {}})
    history[-1] = {
        **history[-1],
        "answers": {**history[-1]["answers"], party: state_hash},
        "signatures": {**history[-1]["signatures"], party: signature},
    }
    values: dict[str, Any] = {"history": history}
    if nxt.rounds > d.rounds:  # both answered: next round, fresh deadline
        history[-1]["closed"] = True
        history[-1]["agreed"] = nxt.lo == step
        values |= {"asked": [], "deadline": now + answer_window(settings)}
    _save(conn, dispute_id, nxt, now, **values)
    store.record(
        conn, now, "dispute_answer", job_id=row.job_id, actor=who, dispute=dispute_id, step=step
    )
    return view(conn, dispute_id)


def expire(conn: Connection, now: float) -> int:
    """Parties that missed a round's deadline forfeit (the provider first when both did:
    the buyer must not pay for work nobody stood up for)."""
    rows = conn.execute(
        select(td.disputes).where(
            td.disputes.c.state == str(D.Phase.BISECTING), td.disputes.c.deadline < now
        )
    ).all()
    for row in rows:
        d = D.Dispute.from_json(row.body)
        silent = next(p for i, p in enumerate(d.parties) if d.answers[i] is None)
        _save(conn, row.id, D.forfeit(d, silent), now)
        store.record(conn, now, "dispute_forfeited", job_id=row.job_id, actor=silent)
    return len(rows)


def awaiting_referee(conn: Connection) -> list[Any]:
    q = select(td.disputes).where(td.disputes.c.state == str(D.Phase.REFEREE))
    return list(conn.execute(q))


def record_referee(
    conn: Connection, dispute_id: str, lo_replayed: str, referee_hash: str, now: float
) -> None:
    """The referee's verdict on the single disputed step (``lo_replayed``: the hash it
    reached at the agreed step, which must be the agreed one)."""
    row = _row(conn, dispute_id)
    d = D.Dispute.from_json(row.body)
    if lo_replayed != d.lo_hash:
        # both parties agreed on a state the referee cannot reach: neither told the truth
        decided = replace(
            d, phase=D.Phase.DECIDED, reason=f"both agreed on a false state at step {d.lo}"
        )
    else:
        decided = D.decide(d, referee_hash)
    referee = {"by": REFEREE, "step": [d.lo, d.hi], "from": d.lo_hash, "hash": referee_hash}
    _save(conn, dispute_id, decided, now, referee=referee)


def decided_unapplied(conn: Connection) -> list[str]:
    q = select(td.disputes.c.id).where(td.disputes.c.state == str(D.Phase.DECIDED))
    return [r.id for r in conn.execute(q)]


def _details(row: Any, d: D.Dispute) -> dict[str, str]:
    names = {row.provider: "provider", row.challenger: "auditor"}
    bound = D.max_rounds(row.end_step - row.anchor_step)
    out = {
        "dispute": f"{row.id}: {d.rounds} bisection rounds (bound ceil(log2 T) = {bound})",
    }
    for i, rnd in enumerate(row.history, 1):
        hashes = ", ".join(f"{names.get(p, p)} {h[:12]}" for p, h in rnd["answers"].items())
        verdict = " (agree)" if rnd.get("agreed") else " (differ)" if rnd.get("closed") else ""
        out[f"round {i}"] = f"step {rnd['step']}: {hashes}{verdict}"
    if row.referee:
        r = row.referee
        out["referee"] = (
            f"{r['by']} re-executed step {r['step'][0]}->{r['step'][1]} from {r['from'][:12]}: "
            f"{r['hash'][:12]}"
        )
    out["ruling"] = d.reason
    return out


def apply(conn: Connection, settings: CoordinatorSettings, dispute_id: str, now: float) -> str:
    """Carry out a decided dispute through the case's normal ruling (fault, refund, redo)."""
    row = _row(conn, dispute_id)
    d = D.Dispute.from_json(row.body)
    losers = {p.lower() for p in d.losers}
    auditor_lost = (row.challenger,) if row.challenger.lower() in losers else ()
    verdict = V.Verdict.REJECTED if row.provider.lower() in losers else V.Verdict.ACCEPTED
    decision = V.Decision(verdict, auditor_lost, f"bisection: {d.reason}")
    conn.execute(update(tv.cases).where(tv.cases.c.id == row.case_id).values(state="auditing"))
    state = verification.apply_decision(
        conn, settings, row.case_id, decision, _details(row, d), now
    )
    conn.execute(update(td.disputes).where(td.disputes.c.id == dispute_id).values(state="applied"))
    return state


def view(conn: Connection, dispute_id: str) -> dict[str, Any]:
    """A dispute as the API shows it: interval, rounds, answers, referee and verdict."""
    row = _row(conn, dispute_id)
    d = D.Dispute.from_json(row.body)
    return {
        "id": row.id,
        "case": row.case_id,
        "job_id": row.job_id,
        "task_id": row.task_id,
        "provider": row.provider,
        "challenger": row.challenger,
        "state": row.state,
        "segment": [row.anchor_step, row.end_step],
        "round_bound": D.max_rounds(row.end_step - row.anchor_step),
        "query_step": d.query_step,
        "interval": [d.lo, d.hi],
        "rounds": d.rounds,
        "history": row.history,
        "referee": row.referee,
        "winner": d.winner,
        "loser": d.loser,
        "reason": d.reason,
        "deadline": row.deadline,
    }


def job_disputes(conn: Connection, job_id: str) -> list[dict[str, Any]]:
    q = select(td.disputes.c.id).where(td.disputes.c.job_id == job_id)
    return [view(conn, r.id) for r in conn.execute(q.order_by(td.disputes.c.created_at))]
