"""Heartbeats written by group commit.

A thousand agents beating every few seconds were a hundred write transactions a second,
each waiting its turn for the writer lock: beats queued behind one another for seconds.
Here a beat waits for the next batch instead: whatever beats arrived while the previous
batch was being written go into one transaction with a fixed number of statements, and
each request is answered once its batch has committed (a beat is never acknowledged
before it is stored). Under no load a batch is a single beat, written at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from gpudepin.coordinator import artifacts, db, enterprise, service
from gpudepin.coordinator import tables_verification as tv

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.heartbeats")

_Waiter = tuple[str, list[str] | None, asyncio.AbstractEventLoop, asyncio.Future[Any]]


class Heartbeats:
    """Collects beats from request handlers and writes them in batches on a worker thread."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._writing = False

    async def beat(self, who: str, held: list[str] | None) -> dict[str, Any]:
        """Record a beat of ``who``; returns ``{"tasks_held", "shards"}`` once stored."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._queue.append((who, held, loop, fut))
            start, self._writing = not self._writing, True
        if start:
            loop.run_in_executor(None, self._drain)
        answer: dict[str, Any] = await fut
        return answer

    def _drain(self) -> None:
        try:
            self._drain_queue()
        except BaseException:  # never leave later beats queued with no writer
            with self._lock:
                self._writing = False
            log.exception("the heartbeat writer stopped")
            raise

    def _drain_queue(self) -> None:
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._writing = False
                    return
            try:
                answers = self._write(batch)
            except BaseException as exc:  # every beat of the batch hears why
                log.exception("writing %d heartbeats failed", len(batch))
                answers = {who: exc for who, _, _, _ in batch}
            for who, _, loop, fut in batch:
                result = answers.get(who, RuntimeError("this heartbeat was not written"))
                err = result if isinstance(result, BaseException) else None
                loop.call_soon_threadsafe(_settle, fut, None if err else result, err)

    def _write(self, batch: list[_Waiter]) -> dict[str, Any]:
        rt = self.rt
        beats = {who: held for who, held, _, _ in batch}  # a later beat of one agent wins
        answers: dict[str, Any] = {}
        with rt.engine.begin() as conn:
            known = _beating(conn, list(beats))
            for who in set(beats) - known:  # unknown or banned: the error they would get
                try:
                    service.require_provider(conn, who)
                except Exception as exc:
                    answers[who] = exc
                    del beats[who]
            if beats:
                now = rt.clock()
                ok = list(beats)
                held = service.heartbeats(conn, beats, now, rt.settings.assignment_ttl_s)
                enterprise.note_alive(conn, ok, now, rt.settings.uptime_max_gap_s)
                duties = artifacts.holder_duties(conn, ok, rt.blobs)  # store/send/drop shards
                for who in ok:
                    answers[who] = {"tasks_held": held[who], "shards": duties[who]}
        return answers


def _beating(conn: Any, addresses: list[str]) -> set[str]:
    """Those of ``addresses`` that are registered and not banned."""
    banned = select(tv.trust.c.address).where(tv.trust.c.banned.is_(True))
    q = select(db.providers.c.address).where(
        db.providers.c.address.in_(addresses), db.providers.c.address.not_in(banned)
    )
    return set(conn.execute(q).scalars())


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
