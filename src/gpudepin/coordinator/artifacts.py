"""Erasure-coded job outputs on providers' disks (rules: ``core.shards``, coding:
``storage.erasure``).

**Storing.** A completed job's output larger than ``shard_threshold_bytes`` is cut
k-of-n and its manifest (hash per shard and of the whole) recorded in ``artifacts``.
``core.shards.place_shards`` picks n holders among online providers that offer enough
disk (``storage_offers``), spread over operators and regions; each gets a
``shard_holders`` row, ``pending`` until it confirms the bytes. With fewer candidates
than n the code shrinks to the providers there are, keeping k/n (4-of-8 becomes 2-of-4);
with fewer than 2 the output stays in the coordinator's blob store and an
``artifact_unsharded`` event says why.

**Transfers.** Providers sit behind NAT, so nothing connects to them: the coordinator
stages shard bytes in its blob store (named by their hash) and lists each holder's
duties in its heartbeat response (``holder_duties``): ``store`` (fetch a staged shard),
``send`` (upload a held shard back) and ``drop`` (a shard it no longer holds). Only the
holder a row names may fetch or upload that shard, and every upload is checked against
the manifest; a holder serving wrong bytes loses the shard.

**Reading.** While the coordinator keeps its own copy (the default,
``shard_keep_coordinator_copy``) a download reads it. Otherwise ``read`` asks live holders
to send their shards, waits up to ``shard_read_wait_s`` for k of them, and rebuilds the
output with ``decode_blobs``, which checks every shard and the whole against the manifest.

**Repair.** ``storage_duty`` marks the shards of holders silent for ``shard_offline_s``
as lost, and once ``core.shards.repair_plan`` says so (live shards at most k + margin)
re-creates every missing shard from k staged ones (or the coordinator's copy) and places
it on new holders away from the live ones (``place_repairs``). Staged bytes are deleted
once every shard is held again and no read waits for them: a holder's request to send
stays open until the read or repair that made it has rebuilt the artifact (or, for a read
given up on, ``READ_REQUEST_TTL_S`` after its wait).
"""

from __future__ import annotations

import logging
import random
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gpudepin.coordinator import db, store
from gpudepin.coordinator.blobs import BlobStore
from gpudepin.coordinator.tables_enterprise import artifacts, shard_holders, storage_offers
from gpudepin.core.errors import (
    Conflict,
    Forbidden,
    GpudepinError,
    InvalidInput,
    NoMatch,
    NotFound,
    Unavailable,
)
from gpudepin.core.placement import ProviderProfile
from gpudepin.core.shards import (
    StoredArtifact,
    durability,
    fit_code,
    place_repairs,
    place_shards,
    repair_plan,
)
from gpudepin.storage.erasure import (
    Manifest,
    block_size,
    damaged,
    decode_blobs,
    encode,
    manifest_of,
    recreate,
)

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.artifacts")

PENDING, HELD, LOST = "pending", "held", "lost"
LIVE = (PENDING, HELD)


# ---- offers and candidates ------------------------------------------------------------


def offer(conn: Connection, provider: str, capacity_bytes: int, now: float) -> dict[str, int]:
    """Record (or change) how much disk ``provider`` offers for shards."""
    if capacity_bytes < 0:
        raise InvalidInput("offered disk cannot be negative")
    row = conn.execute(select(storage_offers).where(storage_offers.c.provider == provider)).first()
    if row is None:
        conn.execute(
            insert(storage_offers).values(
                provider=provider, capacity_bytes=capacity_bytes, used_bytes=0, updated_at=now
            )
        )
        used = 0
    else:
        conn.execute(
            update(storage_offers)
            .where(storage_offers.c.provider == provider)
            .values(capacity_bytes=capacity_bytes, updated_at=now)
        )
        used = row.used_bytes
    store.record(conn, now, "storage_offered", actor=provider, capacity_bytes=capacity_bytes)
    return {"capacity_bytes": capacity_bytes, "used_bytes": used}


def _online(conn: Connection, now: float, offline_s: float) -> set[str]:
    q = select(db.providers.c.address).where(db.providers.c.last_seen >= now - offline_s)
    return {r.address for r in conn.execute(q)}


def candidates(
    conn: Connection, now: float, offline_s: float, shard_bytes: int
) -> list[ProviderProfile]:
    """Online providers with room for one more shard of ``shard_bytes``."""
    p, o = db.providers, storage_offers
    q = (
        select(p.c.address, p.c.operator, p.c.region, p.c.gpu_class)
        .join(o, o.c.provider == p.c.address)
        .where(p.c.last_seen >= now - offline_s, o.c.capacity_bytes - o.c.used_bytes >= shard_bytes)
    )
    return [ProviderProfile(r.address, r.operator, r.region, r.gpu_class) for r in conn.execute(q)]


def durability_of(k: int, n: int, settings: Any) -> dict[str, float]:
    """The estimate the audit shows: a lost shard is noticed within ``shard_offline_s``
    and repaired on the next passes, so that is the interval a loss must fit in."""
    interval_h = max(settings.shard_offline_s + 4 * settings.loop_interval_s, 1.0) / 3600
    est = durability(k, n, interval_h)
    return {
        "interval_h": round(interval_h, 4),
        "shard_loss_per_interval": est.shard_loss,
        "loss_per_year": est.loss_per_year,
        "nines": round(min(est.nines, 99.0), 2),
    }


# ---- storing --------------------------------------------------------------------------


def _stage(blobs: BlobStore, data: bytes) -> str:
    sha, _ = blobs.put_stream([data])
    return sha


def store_outputs(rt: Runtime, job_id: str, outputs: Iterable[dict[str, Any]]) -> None:
    """Shard a completed job's outputs that are over the threshold (see module doc)."""
    s = rt.settings
    if not s.shards:
        return
    for out in outputs:
        if out["size"] > s.shard_threshold_bytes:
            store_artifact(rt, job_id, out["name"], out["sha256"])


def store_artifact(rt: Runtime, job_id: str | None, name: str, sha: str) -> dict[str, Any]:
    """Cut one blob into shards, stage them and place them; returns what happened."""
    s, now = rt.settings, rt.clock()
    with rt.reader.connect() as conn:
        if conn.execute(select(artifacts.c.sha256).where(artifacts.c.sha256 == sha)).first():
            return {"stored": "already"}
    data = rt.blobs.open_path(sha).read_bytes()
    with rt.engine.begin() as conn:
        pool = candidates(conn, now, s.shard_offline_s, block_size(len(data), s.shard_k))
        kn = fit_code(s.shard_k, s.shard_n, len(pool))
        if kn is None:
            note = (
                f"kept in the coordinator's blob store only: {len(pool)} online provider(s) "
                f"offer disk, erasure coding needs at least 2 (configured {s.shard_k}-of-"
                f"{s.shard_n})"
            )
            store.record(conn, now, "artifact_unsharded", job_id=job_id, name=name, reason=note)
            return {"stored": "coordinator", "note": note}
    k, n = kn
    shards = encode(data, k, n)
    manifest = manifest_of(data, shards)
    for sh in shards:
        _stage(rt.blobs, sh.data)
    placed = place_shards(sha, k, n, pool, random.Random(sha))
    adapted: str | None = None
    if (k, n) != (s.shard_k, s.shard_n):
        adapted = f"{k}-of-{n} instead of {s.shard_k}-of-{s.shard_n}: {len(pool)} offer disk"
    try:
        with rt.engine.begin() as conn:
            conn.execute(
                insert(artifacts).values(
                    sha256=sha,
                    job_id=job_id,
                    name=name,
                    size=len(data),
                    k=k,
                    n=n,
                    manifest={
                        **manifest.to_dict(),
                        "durability": durability_of(k, n, s),
                        "note": adapted,
                    },
                    created_at=now,
                )
            )
            conn.execute(
                insert(shard_holders),
                [
                    {
                        "artifact": sha,
                        "idx": i,
                        "provider": holder,
                        "sha256": manifest.shard_sha256[i],
                        "state": PENDING,
                        "updated_at": now,
                    }
                    for i, holder in enumerate(placed.holders)
                ],
            )
            store.record(
                conn,
                now,
                "artifact_sharded",
                job_id=job_id,
                name=name,
                sha256=sha,
                k=k,
                n=n,
                holders=list(placed.holders),
                note=adapted,
            )
    except IntegrityError:  # another coordinator stored it first
        return {"stored": "already"}
    return {"stored": "shards", "k": k, "n": n, "note": adapted}


# ---- holders --------------------------------------------------------------------------


_HELD_BY = select(shard_holders).where(shard_holders.c.provider == bindparam("who"))


def holder_duties(conn: Connection, provider: str, blobs: BlobStore) -> dict[str, list[Any]]:
    """What the provider should do for the shards it holds (sent with its heartbeat)."""
    duties: dict[str, list[Any]] = {}
    for r in conn.execute(_HELD_BY, {"who": provider}):
        ref = {"artifact": r.artifact, "index": r.idx, "sha256": r.sha256}
        if r.state == PENDING and blobs.exists(r.sha256):
            duty = "store"
        elif r.state == HELD and r.send_requested_at is not None and not blobs.exists(r.sha256):
            duty = "send"
        elif r.state == LOST:
            duty = "drop"
        else:
            continue
        duties.setdefault(duty, []).append(ref)
    return duties


def _row(conn: Connection, artifact: str, idx: int, provider: str, states: tuple[str, ...]) -> Any:
    row = conn.execute(
        select(shard_holders).where(
            shard_holders.c.artifact == artifact,
            shard_holders.c.idx == idx,
            shard_holders.c.provider == provider,
        )
    ).first()
    if row is None or row.state not in states:
        raise Forbidden(
            f"shard {idx} of {artifact[:12]}… is not yours to move",
            hint="Only the holder the coordinator chose may fetch or send a shard.",
        )
    return row


def shard_to_fetch(conn: Connection, artifact: str, idx: int, provider: str) -> str:
    """The staged shard's hash, if ``provider`` was chosen to hold it and has not yet."""
    return str(_row(conn, artifact, idx, provider, (PENDING,)).sha256)


def confirm(conn: Connection, artifact: str, idx: int, provider: str, sha: str, now: float) -> None:
    """The holder stored the shard and says its bytes hash to ``sha``."""
    row = _row(conn, artifact, idx, provider, (PENDING, HELD))
    if sha.lower() != row.sha256:
        raise Conflict(
            f"shard {idx} hashes to {sha[:12]}…, the manifest says {row.sha256[:12]}…",
            hint="Fetch the shard again; the download was damaged.",
        )
    if row.state == HELD:
        return
    conn.execute(
        update(shard_holders)
        .where(
            shard_holders.c.artifact == artifact,
            shard_holders.c.idx == idx,
            shard_holders.c.provider == provider,
        )
        .values(state=HELD, updated_at=now)
    )
    art = conn.execute(select(artifacts).where(artifacts.c.sha256 == artifact)).one()
    conn.execute(
        update(storage_offers)
        .where(storage_offers.c.provider == provider)
        .values(used_bytes=storage_offers.c.used_bytes + block_size(art.size, art.k))
    )


def receive(rt: Runtime, artifact: str, idx: int, provider: str, chunks: Iterable[bytes]) -> None:
    """Take a shard a holder sends back; wrong bytes cost the holder the shard."""
    with rt.reader.connect() as conn:
        row = _row(conn, artifact, idx, provider, (HELD,))
    sha, _ = rt.blobs.put_stream(chunks)
    # the request stays open until the read (or repair) that made it has rebuilt the
    # artifact: closed here, the tidy pass took the staged shard for unneeded and deleted
    # it before the waiting read got to it
    if sha == row.sha256:
        return
    if not _still_needed(rt, sha):
        rt.blobs.path(sha).unlink(missing_ok=True)
    with rt.engine.begin() as conn:
        _set(conn, row, state=LOST, note="sent bytes that do not match the manifest")
        store.record(
            conn, rt.clock(), "shard_corrupt", actor=provider, artifact=artifact, index=idx
        )
    raise Conflict(
        f"shard {idx} does not match its recorded hash: it is no longer counted as yours",
        hint="The shard will be re-created on another provider.",
    )


def _still_needed(rt: Runtime, sha: str) -> bool:
    with rt.reader.connect() as conn:
        return (
            conn.execute(select(db.blobs.c.sha256).where(db.blobs.c.sha256 == sha)).first()
            is not None
        )


def dropped(conn: Connection, artifact: str, idx: int, provider: str) -> None:
    """The holder deleted a shard it no longer holds."""
    _row(conn, artifact, idx, provider, (LOST,))
    conn.execute(
        delete(shard_holders).where(
            shard_holders.c.artifact == artifact,
            shard_holders.c.idx == idx,
            shard_holders.c.provider == provider,
        )
    )


def _set(conn: Connection, row: Any, **values: Any) -> None:
    conn.execute(
        update(shard_holders)
        .where(
            shard_holders.c.artifact == row.artifact,
            shard_holders.c.idx == row.idx,
            shard_holders.c.provider == row.provider,
        )
        .values(**values)
    )


# ---- reading --------------------------------------------------------------------------


def _staged(blobs: BlobStore, manifest: Manifest) -> dict[int, bytes]:
    return {
        i: blobs.path(h).read_bytes()
        for i, h in enumerate(manifest.shard_sha256)
        if blobs.exists(h)
    }


def _ask_holders(conn: Connection, artifact: str, alive: set[str], now: float) -> int:
    rows = list(
        conn.execute(
            select(shard_holders).where(
                shard_holders.c.artifact == artifact,
                shard_holders.c.state == HELD,
                shard_holders.c.send_requested_at.is_(None),
            )
        )
    )
    asked = 0
    for r in rows:
        if r.provider in alive:
            _set(conn, r, send_requested_at=now)
            asked += 1
    return asked


def _rebuild(rt: Runtime, art: Any) -> bytes | None:
    """The artifact from k staged shards, or None; bad staged shards are discarded."""
    manifest = Manifest.from_dict(art.manifest)
    staged = _staged(rt.blobs, manifest)
    bad = damaged(manifest, staged)
    for i in bad:  # content-addressed: a bad file here was named for other bytes
        rt.blobs.path(manifest.shard_sha256[i]).unlink(missing_ok=True)
        staged.pop(i)
    if len(staged) < manifest.k:
        return None
    return decode_blobs(manifest, staged)


def read(rt: Runtime, sha: str) -> Path:
    """A temporary file with the artifact rebuilt from any k of its shards (module doc)."""
    with rt.reader.connect() as conn:
        art = conn.execute(select(artifacts).where(artifacts.c.sha256 == sha)).first()
    if art is None:
        raise NotFound(f"no stored file {sha[:12]}…", hint="It may have been deleted.")
    started = time.monotonic()
    deadline, next_ask = started + rt.settings.shard_read_wait_s, started
    while True:
        data = _rebuild(rt, art)
        if data is not None:
            with rt.engine.begin() as conn:
                clear_read_requests(conn, sha)
            break
        if time.monotonic() >= next_ask:
            # again every second while short: another read that finished meanwhile
            # closed the requests, or a holder asked first has gone since
            now = rt.clock()
            with rt.engine.begin() as conn:
                _ask_holders(conn, sha, _online(conn, now, rt.settings.shard_offline_s), now)
            next_ask = time.monotonic() + 1.0
        if time.monotonic() >= deadline:
            have = len(_staged(rt.blobs, Manifest.from_dict(art.manifest)))
            raise Unavailable(
                f"{have} of the {art.k} shards needed have arrived from their holders",
                hint="The holders send them with their next heartbeat: retry in a few seconds.",
            )
        time.sleep(0.2)  # holders upload on their own heartbeat: nothing to wait on here
    fd, tmp = tempfile.mkstemp(dir=rt.blobs.root, prefix=".read-")
    with open(fd, "wb") as fh:
        fh.write(data)
    return Path(tmp)


# ---- repair ---------------------------------------------------------------------------


def repair(rt: Runtime, art: Any, now: float) -> str:
    """One repair pass over one artifact; returns what it did (for logs and tests)."""
    s = rt.settings
    with rt.engine.begin() as conn:
        alive = _online(conn, now, s.shard_offline_s)
        rows = list(
            conn.execute(select(shard_holders).where(shard_holders.c.artifact == art.sha256))
        )
        for r in rows:
            if r.state in LIVE and r.provider not in alive:
                _set(conn, r, state=LOST, updated_at=now, note="holder offline")
                store.record(
                    conn,
                    now,
                    "shard_lost",
                    job_id=art.job_id,
                    actor=r.provider,
                    artifact=art.sha256,
                    index=r.idx,
                )
        rows = list(
            conn.execute(select(shard_holders).where(shard_holders.c.artifact == art.sha256))
        )
    holders: list[str | None] = [None] * art.n
    for r in rows:
        if r.state in LIVE:
            holders[r.idx] = r.provider
    stored = StoredArtifact(art.sha256, art.k, art.n, tuple(holders))
    has_copy = rt.blobs.exists(art.sha256)
    try:
        missing = repair_plan(stored, alive, s.shard_repair_margin)
    except Unavailable:
        if not has_copy:
            return "lost"
        missing = [i for i, h in enumerate(holders) if h is None]
    if not missing:
        return _tidy(rt, art, rows, has_copy, now)
    manifest = Manifest.from_dict(art.manifest)
    if has_copy:
        fresh = encode(rt.blobs.open_path(art.sha256).read_bytes(), art.k, art.n)
        rebuilt = [fresh[i] for i in missing]
    else:
        staged = _staged(rt.blobs, manifest)
        if len(staged) < art.k:
            with rt.engine.begin() as conn:
                _ask_holders(conn, art.sha256, alive, now)
            return "waiting for shards"
        rebuilt = recreate(manifest, staged, missing)
        with rt.engine.begin() as conn:
            clear_read_requests(conn, art.sha256)
    with rt.reader.connect() as conn:
        pool = candidates(conn, now, s.shard_offline_s, block_size(art.size, art.k))
    try:
        placed = place_repairs(stored, missing, pool, alive, random.Random(f"{art.sha256}{now}"))
    except NoMatch as exc:
        log.warning("artifact %s: cannot place repairs: %s", art.sha256[:12], exc.message)
        return "no room"
    for sh in rebuilt:
        _stage(rt.blobs, sh.data)
    with rt.engine.begin() as conn:
        for i, holder in placed.items():
            conn.execute(
                delete(shard_holders).where(
                    shard_holders.c.artifact == art.sha256,
                    shard_holders.c.idx == i,
                    shard_holders.c.provider == holder,
                )
            )
            conn.execute(
                insert(shard_holders).values(
                    artifact=art.sha256,
                    idx=i,
                    provider=holder,
                    sha256=manifest.shard_sha256[i],
                    state=PENDING,
                    updated_at=now,
                )
            )
        store.record(
            conn,
            now,
            "artifact_repaired",
            job_id=art.job_id,
            artifact=art.sha256,
            indexes=sorted(placed),
            holders=[placed[i] for i in sorted(placed)],
        )
    return f"repairing {sorted(placed)}"


def _tidy(rt: Runtime, art: Any, rows: list[Any], has_copy: bool, now: float) -> str:
    """Once every shard is held and no read waits for them: drop staged bytes and (by
    setting) the coordinator's copy. A read's requests older than ``READ_REQUEST_TTL_S``
    past its wait are closed here: that read has given up (its buyer was told to retry)."""
    live = [r for r in rows if r.state in LIVE]
    if len(live) < art.n or any(r.state != HELD for r in live):
        return "transferring"
    asked = [r.send_requested_at for r in live if r.send_requested_at is not None]
    if asked:
        if max(asked) > now - rt.settings.shard_read_wait_s - READ_REQUEST_TTL_S:
            return "reading"
        with rt.engine.begin() as conn:
            clear_read_requests(conn, art.sha256)
    manifest = Manifest.from_dict(art.manifest)
    for h in manifest.shard_sha256:
        rt.blobs.path(h).unlink(missing_ok=True)
    if (
        has_copy
        and not rt.settings.shard_keep_coordinator_copy
        and not _still_needed(rt, art.sha256)
    ):
        rt.blobs.path(art.sha256).unlink(missing_ok=True)
    return "complete"


# how long past its own wait a read's requests keep the staged shards: its buyer is told
# to retry in a few seconds, and the retry should find them
READ_REQUEST_TTL_S = 60.0


def storage_duty(rt: Runtime) -> None:
    """Repair every artifact that needs it (see ``repair``); one failure spares the rest."""
    with rt.reader.connect() as conn:
        arts = list(conn.execute(select(artifacts)))
    now = rt.clock()
    for art in arts:
        try:
            repair(rt, art, now)
        except (GpudepinError, OSError) as exc:
            log.warning("artifact %s: repair failed: %s", art.sha256[:12], exc)


def clear_read_requests(conn: Connection, artifact: str) -> None:
    """A read or repair got what it needed: stop asking holders for their shards."""
    conn.execute(
        update(shard_holders)
        .where(shard_holders.c.artifact == artifact)
        .values(send_requested_at=None)
    )
