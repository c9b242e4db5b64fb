"""The ``/v1`` routes of the trust layer: stake, reputation, verification evidence,
hardware proofs; plus the hooks the task routes of ``api.py`` call for checks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from gpudepin.coordinator import disputes, hwproofs, service, verification
from gpudepin.coordinator import tables_verification as tv
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.core.money import format_amount, parse_amount

router = APIRouter(prefix="/v1")


class StakeIn(BaseModel):
    amount: str


class CommitIn(BaseModel):
    commitment: str = Field(min_length=64, max_length=64)


class AnswerIn(BaseModel):
    answers: list[dict[str, Any]] = Field(max_length=256)


def _stake_view(conn: Any, who: str, rt: Runtime) -> dict[str, Any]:
    money = verification.stake_of(conn, who)
    pending = [
        {"amount": format_amount(r.amount), "release_at": r.release_at}
        for r in conn.execute(
            tv.unbondings.select().where(
                tv.unbondings.c.address == who,
                tv.unbondings.c.released.is_(False),
            )
        )
    ]
    return {
        "address": who,
        **{k: format_amount(v) for k, v in money.items()},
        "pending_unbonds": pending,
        "unbonding_s": rt.settings.unbonding_s,
    }


@router.post("/providers/stake")
def stake(
    body: StakeIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Bond available tokens as stake (slashable; needed for big bids and enterprise)."""
    with rt.engine.begin() as conn:
        verification.stake(conn, who, parse_amount(body.amount), rt.clock())
        return _stake_view(conn, who, rt)


@router.post("/providers/unstake")
def unstake(
    body: StakeIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Start unbonding stake; it returns to the available balance after the delay."""
    with rt.engine.begin() as conn:
        verification.unstake(
            conn, who, parse_amount(body.amount), rt.clock(), rt.settings.unbonding_s
        )
        return _stake_view(conn, who, rt)


@router.get("/providers/stake")
def stake_info(who: str = Depends(caller), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        return _stake_view(conn, who, rt)


@router.get("/providers/{address}/reputation")
def reputation(address: str, rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """A provider's verified record, faults, stake, hardware proof and ban state (public)."""
    address = address.lower()
    with rt.reader.connect() as conn:
        prof = verification.trust_profile(conn, address, verification.params_of(rt.settings))
        prof["hardware_proof"] = hwproofs.latest(conn, address)
    for k in ("staked", "unbonding", "held"):
        prof[k] = format_amount(prof[k])
    return prof


@router.get("/jobs/{job_id}/verification")
def job_verification(
    job_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Every verification decision of a job with its evidence."""
    with rt.reader.connect() as conn:
        service.get_job(conn, job_id, viewer=who)
        return {
            "job_id": job_id,
            "cases": verification.job_verification(conn, job_id),
            "disputes": disputes.job_disputes(conn, job_id),  # training bisections
        }


@router.post("/hwproof/{ch_id}/commit")
def hwproof_commit(
    ch_id: str, body: CommitIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        rows = hwproofs.commit(conn, ch_id, who, body.commitment, rt.clock(), rt.settings)
    return {"rows": rows}


@router.post("/hwproof/{ch_id}/answer")
def hwproof_answer(
    ch_id: str, body: AnswerIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        return hwproofs.answer(conn, ch_id, who, body.answers, rt.clock(), rt.settings)
