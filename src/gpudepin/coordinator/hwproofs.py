"""Hardware proofs on SQL rows: challenge at registration and at random times, judge.

The agent receives a ``hwproof`` task through its poll, derives the matrices from the
seed, commits to the product (``POST /v1/hwproof/{id}/commit``), then answers the rows
the coordinator draws after the commitment (``.../answer``). The time judged is the
coordinator's own, from handing out the seed to receiving the commitment.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from gpudepin.coordinator import db, store, verification
from gpudepin.coordinator import tables_verification as tv
from gpudepin.core import hwproof as H
from gpudepin.core.errors import Conflict, Forbidden, NotFound
from gpudepin.settings import CoordinatorSettings

OPEN = ("new", "issued", "committed")


def params_for(settings: CoordinatorSettings) -> H.HwProofParams:
    return replace(H.DEFAULT_HW, setup_base_s=settings.hwproof_setup_s)


def schedule(
    conn: Connection, address: str, claimed: str, now: float, settings: CoordinatorSettings
) -> str | None:
    """Open a challenge unless this claim is proven already or one is open.

    A ``cpu`` claim is the lowest class there is: no slower card can hide behind it, so
    it stands without a challenge (CPU providers pass honestly)."""
    if claimed == "cpu":
        verification._ensure_trust(conn, address, now)
        conn.execute(
            update(tv.trust)
            .where(tv.trust.c.address == address)
            .values(hardware_proven=True, proven_class="cpu")
        )
        return None
    t = verification.trust_row(conn, address)
    if t is not None and t.hardware_proven and t.proven_class == claimed:
        return None
    open_one = conn.execute(
        select(tv.hw_challenges.c.id).where(
            tv.hw_challenges.c.address == address, tv.hw_challenges.c.state.in_(OPEN)
        )
    ).first()
    if open_one is not None:
        return None
    spec = H.make_spec(claimed, params_for(settings))
    ch_id = "h" + secrets.token_hex(8)
    conn.execute(
        insert(tv.hw_challenges).values(
            id=ch_id,
            address=address,
            claimed=claimed,
            seed=str(secrets.randbits(62)),
            n=spec.n,
            state="new",
            created_at=now,
        )
    )
    return ch_id


def schedule_due(conn: Connection, now: float, settings: CoordinatorSettings) -> int:
    """Re-challenge providers whose random re-proof time came."""
    q = select(tv.trust.c.address).where(
        tv.trust.c.next_hwproof_at.is_not(None), tv.trust.c.next_hwproof_at <= now
    )
    count = 0
    for row in conn.execute(q).all():
        prov = conn.execute(
            select(db.providers).where(db.providers.c.address == row.address)
        ).first()
        conn.execute(
            update(tv.trust).where(tv.trust.c.address == row.address).values(next_hwproof_at=None)
        )
        if prov is not None:
            verification._ensure_trust(conn, row.address, now)
            conn.execute(
                update(tv.trust)
                .where(tv.trust.c.address == row.address)
                .values(hardware_proven=False)
            )
            count += schedule(conn, row.address, prov.gpu_class, now, settings) is not None
    return count


def claim(conn: Connection, address: str, now: float) -> dict[str, Any] | None:
    """A new challenge for ``address``, shaped like a task for the agent."""
    row = conn.execute(
        select(tv.hw_challenges).where(
            tv.hw_challenges.c.address == address, tv.hw_challenges.c.state == "new"
        )
    ).first()
    if row is None:
        return None
    conn.execute(
        update(tv.hw_challenges)
        .where(tv.hw_challenges.c.id == row.id)
        .values(state="issued", issued_at=now)
    )
    return {
        "id": row.id,
        "kind": "hwproof",
        "label": f"hardware proof ({row.claimed}, n={row.n})",
        "job_id": None,
        "task_spec": {"seed": int(row.seed), "n": row.n, "claimed": row.claimed},
        "job_spec": {},
        "inputs": {},
    }


def _mine(conn: Connection, ch_id: str, address: str, state: str) -> Any:
    row = conn.execute(select(tv.hw_challenges).where(tv.hw_challenges.c.id == ch_id)).first()
    if row is None:
        raise NotFound(f"no hardware challenge {ch_id}")
    if row.address != address:
        raise Forbidden(f"hardware challenge {ch_id} is not yours")
    if row.state != state:
        raise Conflict(f"hardware challenge {ch_id} is {row.state}, not {state}")
    return row


def commit(
    conn: Connection, ch_id: str, address: str, commitment: str, now: float, settings: Any
) -> list[int]:
    """Take the commitment, stop the clock, and draw the rows to open."""
    from gpudepin.verification.hwproof import pick_rows

    row = _mine(conn, ch_id, address, "issued")
    params = params_for(settings)
    rows = pick_rows(random.Random(f"{row.seed}:{commitment}"), row.n, params.spot_rows)
    conn.execute(
        update(tv.hw_challenges)
        .where(tv.hw_challenges.c.id == ch_id)
        .values(state="committed", committed_at=now, commitment=commitment[:64], rows=rows)
    )
    return rows


def answer(
    conn: Connection,
    ch_id: str,
    address: str,
    answers: list[dict[str, Any]],
    now: float,
    settings: CoordinatorSettings,
) -> dict[str, Any]:
    """Check the opened rows (Freivalds), judge the time, and apply the verdict."""
    from gpudepin.verification.hwproof import SpotAnswer, verify_solution

    row = _mine(conn, ch_id, address, "committed")
    params = params_for(settings)
    try:
        spots = [SpotAnswer.from_json(a) for a in answers]
        ok = verify_solution(
            int(row.seed),
            row.n,
            row.commitment,
            spots,
            row.rows,
            params.freivalds_vectors,
            random.Random(f"{row.seed}:check"),
        )
    except (KeyError, ValueError, TypeError):
        ok = False
    spec = H.make_spec(row.claimed, params)
    verdict = H.judge(spec, ok, row.committed_at - row.issued_at, params)
    body = {
        "outcome": str(verdict.outcome),
        "device_class": verdict.device_class,
        "measured_tflops": round(verdict.measured_tflops, 4),
        "detail": verdict.detail,
        "seconds": round(row.committed_at - row.issued_at, 3),
    }
    conn.execute(
        update(tv.hw_challenges)
        .where(tv.hw_challenges.c.id == ch_id)
        .values(state="done", verdict=body)
    )
    _apply(conn, address, row.claimed, verdict, now, settings, ch_id)
    store.record(conn, now, "hardware_proof", actor=address, claimed=row.claimed, **body)
    return body


def _apply(
    conn: Connection,
    address: str,
    claimed: str,
    verdict: H.HwVerdict,
    now: float,
    settings: CoordinatorSettings,
    ref: str,
) -> None:
    verification._ensure_trust(conn, address, now)
    proven = verdict.outcome in (H.HwOutcome.PASS, H.HwOutcome.RECLASSIFY)
    cls = verdict.device_class if proven else "cpu"
    nxt = None
    if proven and settings.hwproof_every_s > 0:
        nxt = now + settings.hwproof_every_s * random.Random(ref).uniform(0.5, 1.5)
    conn.execute(
        update(tv.trust)
        .where(tv.trust.c.address == address)
        .values(hardware_proven=proven, proven_class=cls if proven else None, next_hwproof_at=nxt)
    )
    if cls != claimed:
        conn.execute(
            update(db.providers).where(db.providers.c.address == address).values(gpu_class=cls)
        )
    if verdict.outcome is H.HwOutcome.FAULT:
        params = verification.params_of(settings)
        verification._fault(conn, params, address, None, None, ref, now)


def latest(conn: Connection, address: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(tv.hw_challenges)
        .where(tv.hw_challenges.c.address == address)
        .order_by(tv.hw_challenges.c.created_at.desc())
    ).first()
    if row is None:
        return None
    return {
        "id": row.id,
        "claimed": row.claimed,
        "n": row.n,
        "state": row.state,
        "verdict": row.verdict,
    }
