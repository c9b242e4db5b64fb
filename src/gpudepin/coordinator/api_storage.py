"""Routes of erasure-coded storage: providers offer disk and move shards (see artifacts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from gpudepin.coordinator import artifacts, service
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.coordinator.blobs import check_sha256

router = APIRouter(prefix="/v1")


class OfferIn(BaseModel):
    capacity_bytes: int = Field(ge=0, le=1 << 50)


class HeldIn(BaseModel):
    sha256: str


@router.post("/providers/storage")
def offer_storage(
    body: OfferIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Offer (or change) disk for erasure-coded shards of other people's outputs."""
    with rt.engine.begin() as conn:
        service.require_provider(conn, who)
        return artifacts.offer(conn, who, body.capacity_bytes, rt.clock())


@router.get("/shards/{artifact}/{index}")
def fetch_shard(
    artifact: str, index: int, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> FileResponse:
    """The staged bytes of a shard, for the holder chosen to keep it."""
    with rt.reader.connect() as conn:
        sha = artifacts.shard_to_fetch(conn, check_sha256(artifact), index, who)
    return FileResponse(rt.blobs.open_path(sha), filename=f"{index}.shard")


@router.post("/shards/{artifact}/{index}/held")
def shard_held(
    artifact: str,
    index: int,
    body: HeldIn,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """The holder stored its shard; the hash it reports must match the manifest."""
    with rt.engine.begin() as conn:
        artifacts.confirm(
            conn, check_sha256(artifact), index, who, check_sha256(body.sha256), rt.clock()
        )
    return {"artifact": artifact, "index": index, "state": "held"}


@router.put("/shards/{artifact}/{index}")
async def send_shard(
    artifact: str,
    index: int,
    request: Request,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """A holder sends its shard back (for a read or a repair); checked against the manifest."""
    chunks = [c async for c in request.stream()]
    await run_in_threadpool(artifacts.receive, rt, check_sha256(artifact), index, who, chunks)
    return {"artifact": artifact, "index": index, "received": True}


@router.post("/shards/{artifact}/{index}/dropped")
def shard_dropped(
    artifact: str, index: int, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """The holder deleted a shard the coordinator no longer counts as its."""
    with rt.engine.begin() as conn:
        artifacts.dropped(conn, check_sha256(artifact), index, who)
    return {"artifact": artifact, "index": index, "dropped": True}
