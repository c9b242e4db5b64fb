"""The hosted-inference gateway: buyers' requests relayed to the provider serving a lease.

Providers sit behind NAT, so nothing connects into them. The provider's agent opens the
channel instead: it long-polls ``GET /v1/leases/{id}/requests`` and answers each request
with ``POST /v1/leases/{id}/responses/{rid}``. A buyer's ``invoke`` waits on a future
that the answer resolves. Everything here lives in the coordinator process's event loop
(one coordinator process relays a given lease; see docs/ai.md).

A provider that stops polling for ``stale_s`` is taken for dead: requests queued for it
or in its hands fail at once with a 503 that says so, and new ones are refused until it
polls again.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gpudepin.core.errors import ERRORS_BY_CODE, GpudepinError, NotFound, Unavailable
from gpudepin.core.hedging import HedgePolicy, QuantileWindow, hedge_after, hedge_target

LATENCY_WINDOW = 2048  # requests whose latency the percentiles describe
MAX_BATCH = 32  # requests handed to an agent per poll


def percentile(values: list[float], q: float) -> float | None:
    """The ``q`` quantile (0-1) of ``values`` by the nearest-rank rule; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


@dataclass
class Pending:
    id: str
    op: str
    body: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    started: float

    def settle(self, result: dict[str, Any] | None, error: BaseException | None) -> None:
        """Resolve the buyer's future from any thread (its loop may not be the caller's)."""

        def _set() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result or {})

        self.future.get_loop().call_soon_threadsafe(_set)


@dataclass
class Waiter:
    """An agent's open poll, woken from whichever thread queues a request."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event

    def wake(self) -> None:
        self.loop.call_soon_threadsafe(self.event.set)


@dataclass
class Endpoint:
    """One lease's relay: its queue, requests in the agent's hands, and figures."""

    lease_id: str
    queue: deque[Pending] = field(default_factory=deque)
    inflight: dict[str, Pending] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    last_contact: float | None = None  # monotonic time of the agent's last poll or answer
    waiting: int = 0  # agent polls open right now
    requests: int = 0
    errors: int = 0
    latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    overhead_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    dirty: bool = False
    # guards everything above: test clients and several servers' loops may share it
    lock: threading.Lock = field(default_factory=threading.Lock)

    def connected(self, now: float, stale_s: float) -> bool:
        return self.waiting > 0 or (
            self.last_contact is not None and now - self.last_contact < stale_s
        )

    def figures(self) -> dict[str, Any]:
        with self.lock:
            lat, over = list(self.latency_ms), list(self.overhead_ms)
            requests, errors = self.requests, self.errors
        return {
            "requests": requests,
            "errors": errors,
            **latency_figures(lat),
            "gateway_overhead_ms": {
                "p50": _round(percentile(over, 0.5)),
                "p99": _round(percentile(over, 0.99)),
            },
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def latency_figures(latencies: list[float]) -> dict[str, Any]:
    """p50/p95/p99 of request latencies in milliseconds."""
    return {
        "latency_ms": {
            "p50": _round(percentile(latencies, 0.5)),
            "p95": _round(percentile(latencies, 0.95)),
            "p99": _round(percentile(latencies, 0.99)),
            "window": len(latencies),
        }
    }


class Gateway:
    """Relays requests for every lease this coordinator process serves."""

    def __init__(
        self, stale_s: float = 10.0, timeout_s: float = 60.0, hedge_floor_s: float = 0.25
    ) -> None:
        self.stale_s = stale_s
        self.timeout_s = timeout_s
        self.endpoints: dict[str, Endpoint] = {}
        # hedging across a lease's replicas (call_hedged), per primary lease order
        self.hedge_policy = HedgePolicy()
        self.hedge_floor_s = hedge_floor_s
        self.group_latency: dict[str, QuantileWindow] = {}
        self.hedged: dict[str, int] = {}

    def endpoint(self, lease_id: str) -> Endpoint:
        ep = self.endpoints.get(lease_id)
        if ep is None:
            ep = self.endpoints[lease_id] = Endpoint(lease_id)
        return ep

    def _dead(self, ep: Endpoint) -> Unavailable:
        ago = (
            "never"
            if ep.last_contact is None
            else f"{time.monotonic() - ep.last_contact:.0f} s ago"
        )
        return Unavailable(
            f"the provider serving lease {ep.lease_id} is not answering (last heard from {ago})",
            hint="If it went down, its lease stops billing when its receipts stop; "
            "create a new lease to serve again.",
        )

    async def call(self, lease_id: str, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """Relay one request and wait for the provider's answer (or a clear failure)."""
        ep = self.endpoint(lease_id)
        now = time.monotonic()
        if not ep.connected(now, self.stale_s):
            if ep.last_contact is None:
                raise Unavailable(
                    f"lease {lease_id}'s endpoint is not ready yet",
                    hint="Its provider is still loading the model; `gpudepin lease show` "
                    "says when it is ready.",
                )
            raise self._dead(ep)
        pending = Pending(
            "r" + secrets.token_hex(8), op, body, asyncio.get_running_loop().create_future(), now
        )
        with ep.lock:
            ep.queue.append(pending)
            waiters = list(ep.waiters)
        for waiter in waiters:
            waiter.wake()
        try:
            answer = await self._wait(ep, pending)
        except asyncio.CancelledError:  # a hedged twin answered first: take it back
            self._drop(ep, pending)
            raise
        except GpudepinError:
            with ep.lock:
                ep.requests += 1
                ep.errors += 1
                ep.dirty = True
            raise
        total_ms = (time.monotonic() - pending.started) * 1000
        compute = answer.pop("_compute_ms", None)
        with ep.lock:
            ep.requests += 1
            ep.latency_ms.append(total_ms)
            if isinstance(compute, int | float):
                ep.overhead_ms.append(max(0.0, total_ms - float(compute)))
            ep.dirty = True
        return answer

    async def call_hedged(
        self, group: str, lease_ids: list[str], op: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Relay one request to a lease served by several replicas, hedging the tail.

        The request goes to the least busy live replica; if it has not answered after
        ``core.hedging.hedge_after`` (the group's p95 latency, or the floor while there is
        no history) it goes to a second replica too. The first answer wins and the other
        copy is cancelled (taken off its queue; a late answer is refused). A replica that
        fails outright hands the request to the next one at once.
        """
        window = self.group_latency.setdefault(group, QuantileWindow(LATENCY_WINDOW))
        now = time.monotonic()
        live = [i for i in lease_ids if self.endpoint(i).connected(now, self.stale_s)]
        order = sorted(live, key=self._load) + [i for i in lease_ids if i not in live]
        if len(order) == 1:
            return await self.call(order[0], op, body)
        started = time.monotonic()
        delay = hedge_after(window, self.hedge_policy, self.hedge_floor_s)
        tasks = [asyncio.ensure_future(self.call(order[0], op, body))]
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done or tasks[0].exception() is not None:
            target = hedge_target(order, order[:1])
            assert target is not None
            tasks.append(asyncio.ensure_future(self.call(target, op, body)))
            self.hedged[group] = self.hedged.get(group, 0) + 1
        try:
            while True:
                done, running = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                winner = next((t for t in done if t.exception() is None), None)
                if winner is not None or not running:
                    break
                tasks = list(running)
        finally:
            for t in tasks:
                t.cancel()
            # let the loser take its request back before the caller moves on
            await asyncio.gather(*tasks, return_exceptions=True)
        if winner is None:
            raise next(iter(done)).exception()  # type: ignore[misc]
        window.add(time.monotonic() - started)
        return winner.result()

    def _load(self, lease_id: str) -> int:
        ep = self.endpoint(lease_id)
        with ep.lock:
            return len(ep.queue) + len(ep.inflight)

    async def probe(self, lease_id: str, timeout_s: float) -> None:
        """Relay a ``probe`` request to the serving agent and wait for its answer.

        The coordinator's uptime probe (``lease_sla.probe_duty``): it travels the same
        queue and agent channel as a buyer's request but is left out of the endpoint's
        figures. Raises Unavailable when the agent is gone or does not answer in time.
        """
        ep = self.endpoint(lease_id)
        if not ep.connected(time.monotonic(), self.stale_s):
            raise self._dead(ep)
        pending = Pending(
            "p" + secrets.token_hex(8),
            "probe",
            {},
            asyncio.get_running_loop().create_future(),
            time.monotonic(),
        )
        with ep.lock:
            ep.queue.append(pending)
            waiters = list(ep.waiters)
        for waiter in waiters:
            waiter.wake()
        done, _ = await asyncio.wait({pending.future}, timeout=timeout_s)
        if not done:
            self._drop(ep, pending)
            raise Unavailable(f"lease {lease_id}: no answer to a probe within {timeout_s:g} s")
        pending.future.result()

    async def _wait(self, ep: Endpoint, pending: Pending) -> dict[str, Any]:
        deadline = pending.started + self.timeout_s
        while True:
            done, _ = await asyncio.wait({pending.future}, timeout=0.5)
            if done:
                return pending.future.result()
            now = time.monotonic()
            if not ep.connected(now, self.stale_s):
                self.fail_all(ep.lease_id, self._dead(ep))
            elif now > deadline:
                self._drop(ep, pending)
                raise Unavailable(
                    f"lease {ep.lease_id}: no answer within {self.timeout_s:.0f} s",
                    hint="Send smaller requests, or check the provider's load.",
                )

    def _drop(self, ep: Endpoint, pending: Pending) -> None:
        with ep.lock:
            ep.inflight.pop(pending.id, None)
            if pending in ep.queue:
                ep.queue.remove(pending)

    def fail_all(self, lease_id: str, error: GpudepinError) -> int:
        """Fail every request queued for or held by the lease's provider."""
        ep = self.endpoints.get(lease_id)
        if ep is None:
            return 0
        with ep.lock:
            failed = list(ep.queue) + list(ep.inflight.values())
            ep.queue.clear()
            ep.inflight.clear()
        for p in failed:
            p.settle(None, error)
        return len(failed)

    async def take(self, lease_id: str, wait: float) -> list[dict[str, Any]]:
        """The agent's long poll: up to ``MAX_BATCH`` requests, or none after ``wait`` s."""
        ep = self.endpoint(lease_id)
        waiter = Waiter(asyncio.get_running_loop(), asyncio.Event())
        deadline = time.monotonic() + max(0.0, wait)
        with ep.lock:
            ep.last_contact = time.monotonic()
            ep.waiting += 1
            ep.waiters.append(waiter)
        try:
            while True:
                with ep.lock:
                    if ep.queue:
                        batch: list[dict[str, Any]] = []
                        while ep.queue and len(batch) < MAX_BATCH:
                            p = ep.queue.popleft()
                            ep.inflight[p.id] = p
                            batch.append({"id": p.id, "op": p.op, "body": p.body})
                        return batch
                    waiter.event.clear()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except TimeoutError:
                    return []
        finally:
            with ep.lock:
                ep.waiting -= 1
                ep.waiters.remove(waiter)
                ep.last_contact = time.monotonic()

    def answer(
        self,
        lease_id: str,
        rid: str,
        body: dict[str, Any] | None,
        error: dict[str, Any] | None,
        compute_ms: float | None,
    ) -> None:
        """The agent's answer to request ``rid``: a result body or an error."""
        ep = self.endpoint(lease_id)
        with ep.lock:
            ep.last_contact = time.monotonic()
            pending = ep.inflight.pop(rid, None)
        if pending is None:
            raise NotFound(
                f"request {rid} of lease {lease_id} is not waiting for an answer",
                hint="It timed out or was failed meanwhile.",
            )
        if error is not None:
            cls = ERRORS_BY_CODE.get(str(error.get("code")), GpudepinError)
            message = str(error.get("message", "the model failed"))
            pending.settle(None, cls(message, hint=error.get("hint") or ""))
            return
        result = dict(body or {})
        if compute_ms is not None:
            result["_compute_ms"] = compute_ms
        pending.settle(result, None)

    def status(self, lease_id: str) -> dict[str, Any]:
        """Whether the endpoint is ready (its agent polls) and its request figures."""
        ep = self.endpoints.get(lease_id)
        if ep is None:
            return {"ready": False, "queued": 0, "in_flight": 0}
        with ep.lock:
            queued, in_flight = len(ep.queue), len(ep.inflight)
        return {
            "ready": ep.connected(time.monotonic(), self.stale_s),
            "queued": queued,
            "in_flight": in_flight,
            **ep.figures(),
        }

    def dirty(self) -> list[tuple[str, int, int, list[float]]]:
        """Endpoints whose figures changed since last asked: (lease, requests, errors, ms)."""
        out = []
        for ep in list(self.endpoints.values()):
            with ep.lock:
                if ep.dirty:
                    ep.dirty = False
                    out.append((ep.lease_id, ep.requests, ep.errors, list(ep.latency_ms)))
        return out
