"""The ``/v1/disputes`` routes: a training dispute's state, its parties' inputs and their
signed answers to bisection queries (docs/verification.md, "Training")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gpudepin.coordinator import disputes, service
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.core.disputes import answer_message
from gpudepin.core.errors import Forbidden
from gpudepin.identity import recover_signer

router = APIRouter(prefix="/v1")


class DisputeAnswerIn(BaseModel):
    step: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(max_length=200)


@router.get("/disputes/{dispute_id}")
def get_dispute(
    dispute_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """A dispute's interval, rounds, answers, referee step and verdict (parties and buyer)."""
    with rt.reader.connect() as conn:
        out = disputes.view(conn, dispute_id)
        if who.lower() not in (out["provider"].lower(), out["challenger"].lower()):
            service.get_job(conn, out["job_id"], viewer=who)  # the buyer may look too
    return out


@router.get("/disputes/{dispute_id}/inputs/{name}")
def dispute_input(
    dispute_id: str, name: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> FileResponse:
    """What a party replays from: the job's dataset and the agreed checkpoint."""
    with rt.reader.connect() as conn:
        sha = disputes.input_sha(conn, dispute_id, who, name)
    return FileResponse(rt.blobs.open_path(sha), filename=name)


@router.post("/disputes/{dispute_id}/answer")
def dispute_answer(
    dispute_id: str,
    body: DisputeAnswerIn,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """A party's signed state hash at the queried step."""
    if recover_signer(answer_message(dispute_id, body.step, body.sha256), body.signature) != who:
        raise Forbidden("the answer's signature is not yours", hint="Sign with the agent's key.")
    with rt.engine.begin() as conn:
        out = disputes.answer(
            conn, rt.settings, dispute_id, who, body.step, body.sha256, body.signature, rt.clock()
        )
    rt.notify_work()  # the next round's queries, or the referee
    return out
