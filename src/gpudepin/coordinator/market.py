"""The spot market on SQL rows: orders, sealed bids, clearing, awards and claims.

The rules are ``gpudepin.core.market`` and ``gpudepin.core.orderbook``; this module loads
their inputs from the tables of ``tables_market`` and writes their decisions back. Every
function takes an open connection inside a transaction, like ``service``.

Several coordinators may clear at once: ``clear_order`` takes the order row with
``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite serialises writers with
``BEGIN IMMEDIATE``) and moves it out of ``open`` with a compare-and-set, so an order is
awarded once. A batch order's id is its job's id: its tasks are claimable only by
providers holding an active award (``claimable_by``), each paid its own bid per unit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, bindparam, exists, insert, or_, select, update

from gpudepin.coordinator import db, store
from gpudepin.coordinator import tables_market as tm
from gpudepin.core import ledger
from gpudepin.core import verification as core_verification
from gpudepin.core.errors import Conflict, Forbidden, GpudepinError, NotFound
from gpudepin.core.hardware import Tier
from gpudepin.core.jobs import TERMINAL_JOB_STATES, TaskState
from gpudepin.core.market import (
    Ask,
    Award,
    Bid,
    NoMatchResult,
    Order,
    OrderKind,
    OrderState,
    ProviderView,
    Requirements,
    check_bid,
    clear,
    eligible,
    explain_no_match,
    ready_to_clear,
    reaward,
    requirements_of,
    validate_order,
)

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

log = logging.getLogger("gpudepin.market")
PG = "postgresql"
REOPENED = "reopened"
# capacity a provider offers a batch order is bounded by its bid, not by this
BATCH_SLOTS = 1_000_000


# ---- conversions ----------------------------------------------------------------------


def requirements_json(req: Requirements) -> dict[str, Any]:
    return {
        "gpu_class": req.gpu_class,
        "min_vram_gb": req.min_vram_gb,
        "min_tflops": req.min_tflops,
        "tier": None if req.tier is None else req.tier.value,
        "regions": None if req.regions is None else list(req.regions),
        "deny_regions": sorted(req.deny_regions),
    }


def order_of(row: Any) -> Order:
    return Order(
        id=row.id,
        kind=OrderKind(row.kind),
        buyer=row.buyer,
        requirements=requirements_of(row.requirements),
        max_price=row.max_price,
        quantity=row.quantity,
        created_at=row.created_at,
        duration_s=row.duration_s,
        bid_window_s=row.bid_window_s,
        state=OrderState(row.state),
        task_seconds=row.task_seconds,
    )


def bid_of(row: Any) -> Bid:
    return Bid(row.order_id, row.provider, row.price, row.capacity, row.valid_until, row.signature)


def order_json(order: Order) -> dict[str, Any]:
    """An order as a provider's bid engine reads it (prices in base units, as text)."""
    return {
        "id": order.id,
        "kind": order.kind.value,
        "buyer": order.buyer,
        "requirements": requirements_json(order.requirements),
        "max_price": str(order.max_price),
        "quantity": order.quantity,
        "duration_s": order.duration_s,
        "task_seconds": order.task_seconds,
        "created_at": order.created_at,
        "bid_window_s": order.bid_window_s,
        "closes_at": order.closes_at,
    }


# ---- providers as the market sees them ------------------------------------------------


def _leased_gpus(conn: Connection) -> dict[str, int]:
    q = select(tm.leases.c.provider, tm.leases.c.gpus).where(
        tm.leases.c.state.in_(["pending", "active"])
    )
    held: dict[str, int] = {}
    for r in conn.execute(q):
        held[r.provider] = held.get(r.provider, 0) + r.gpus
    return held


def provider_views(
    conn: Connection, kind: OrderKind, now: float, online_s: float
) -> dict[str, ProviderView]:
    """Online providers by address, with the capacity they have free for ``kind``: a
    machine holding a lease takes neither another lease on those GPUs nor batch work."""
    from gpudepin.coordinator import verification  # it imports service, which imports us

    held = _leased_gpus(conn)
    views: dict[str, ProviderView] = {}
    q = select(db.providers).where(db.providers.c.last_seen >= now - online_s)
    for p in conn.execute(q):
        gpus = max(int(p.hardware.get("gpu_count") or 0), 1)
        busy = held.get(p.address, 0)
        free = max(gpus - busy, 0) if kind is OrderKind.LEASE else 0 if busy else BATCH_SLOTS
        # the auction's score weighs each provider's verified record, not a flat prior
        rep = core_verification.reputation(
            verification.record_of(conn, p), core_verification.DEFAULT_PARAMS
        )
        views[p.address] = ProviderView.of(p.address, p.gpu_class, p.region, free, rep)
    return views


# ---- opening orders -------------------------------------------------------------------


def new_lease_order_id() -> str:
    import secrets

    return "l" + secrets.token_hex(6)


def open_order(
    conn: Connection,
    order: Order,
    now: float,
    *,
    settings: Any,
    workload: dict[str, Any] | None = None,
) -> Award | None:
    """Store a validated order and try the standing asks at once (instant spot); returns
    the award when the asks filled it, None when it waits for bids."""
    conn.execute(
        insert(tm.orders).values(
            id=order.id,
            kind=order.kind.value,
            buyer=order.buyer,
            requirements=requirements_json(order.requirements),
            max_price=order.max_price,
            quantity=order.quantity,
            duration_s=order.duration_s,
            task_seconds=order.task_seconds,
            bid_window_s=order.bid_window_s,
            created_at=order.created_at,
            closes_at=order.closes_at,
            state=OrderState.OPEN.value,
            workload=workload,
        )
    )
    store.record(
        conn,
        now,
        "order_opened",
        job_id=order.id if order.kind is OrderKind.BATCH else None,
        actor=order.buyer,
        order_id=order.id,
        order_kind=order.kind.value,
        max_price=str(order.max_price),
        quantity=order.quantity,
    )
    from gpudepin.coordinator.market_spot import match_instant

    award = match_instant(conn, order, now, settings)
    if award is not None:
        set_order_state(
            conn, order.id, OrderState.OPEN, OrderState.AWARDED, now, award.clearing_price
        )
        apply_award(conn, order, award, now, settings)
    return award


def build_order(
    *,
    order_id: str,
    kind: OrderKind,
    buyer: str,
    requirements: Requirements,
    max_price: int,
    quantity: int,
    now: float,
    settings: Any,
    duration_s: int = 0,
    task_seconds: float = 0.0,
) -> Order:
    """A validated order (InvalidInput names the first bad field)."""
    order = Order(
        id=order_id,
        kind=kind,
        buyer=buyer.lower(),
        requirements=requirements,
        max_price=max_price,
        quantity=quantity,
        created_at=now,
        duration_s=duration_s,
        bid_window_s=settings.market_bid_window_s,
        task_seconds=task_seconds,
    )
    return validate_order(order, max_duration_s=settings.market_max_lease_s)


# ---- bids -----------------------------------------------------------------------------


def get_order_row(conn: Connection, order_id: str) -> Any:
    row = conn.execute(select(tm.orders).where(tm.orders.c.id == order_id)).first()
    if row is None:
        raise NotFound(f"no order {order_id}", hint="Open orders are listed by /v1/market/work.")
    return row


def order_bids(conn: Connection, order_id: str, states: Iterable[str] | None = None) -> list[Bid]:
    q = select(tm.bids).where(tm.bids.c.order_id == order_id)
    if states is not None:
        q = q.where(tm.bids.c.state.in_(list(states)))
    return [bid_of(r) for r in conn.execute(q.order_by(tm.bids.c.provider))]


def place_bid(conn: Connection, bid: Bid, now: float, settings: Any) -> None:
    """Check a signed bid against its order (``check_bid``) and store it."""
    from gpudepin.coordinator import service

    service.require_provider(conn, bid.provider)
    row = get_order_row(conn, bid.order_id)
    order = order_of(row)
    view = provider_views(conn, order.kind, now, settings.assignment_ttl_s).get(bid.provider)
    if view is None:
        raise Forbidden(
            f"provider {bid.provider} is not online",
            hint="Bids come from a running agent that heartbeats.",
        )
    check_bid(order, bid, view, order_bids(conn, order.id, ["open"]), now)
    if order.kind is OrderKind.LEASE:
        from gpudepin.coordinator import lease_sla

        lease_sla.refuse_lost_provider(conn, order.id, bid.provider)
    # a bid of an earlier round (the order opened again after its winners left) is replaced
    conn.execute(
        tm.bids.delete().where(
            tm.bids.c.order_id == bid.order_id, tm.bids.c.provider == bid.provider
        )
    )
    conn.execute(
        insert(tm.bids).values(
            order_id=bid.order_id,
            provider=bid.provider,
            price=bid.price,
            capacity=bid.capacity,
            valid_until=bid.valid_until,
            signature=bid.signature,
            placed_at=now,
            state="open",
        )
    )
    store.record(
        conn,
        now,
        "bid_placed",
        job_id=order.id if order.kind is OrderKind.BATCH else None,
        actor=bid.provider,
        order_id=order.id,
        price=str(bid.price),
        capacity=bid.capacity,
    )


def work_for(conn: Connection, provider: str, now: float, settings: Any) -> dict[str, Any]:
    """What a provider's bid engine needs: the open orders its hardware satisfies that it
    has not bid on, the state of its recent bids, and the leases it must run."""
    from gpudepin.coordinator import market_leases, service

    service.require_provider(conn, provider)
    mine = {
        r.order_id: r for r in conn.execute(select(tm.bids).where(tm.bids.c.provider == provider))
    }
    q = select(tm.orders).where(
        tm.orders.c.state == OrderState.OPEN.value, tm.orders.c.closes_at > now
    )
    open_orders = []
    views: dict[OrderKind, ProviderView | None] = {}
    for row in conn.execute(q.order_by(tm.orders.c.created_at).limit(200)):
        order = order_of(row)
        if order.kind not in views:
            views[order.kind] = provider_views(
                conn, order.kind, now, settings.assignment_ttl_s
            ).get(provider)
        view = views[order.kind]
        if (row.id in mine and mine[row.id].state == "open") or view is None:
            continue  # bid this round already (an order opened again takes new bids)
        if not eligible(order, view):
            open_orders.append(order_json(order))
    recent = [
        {"order_id": r.order_id, "state": r.state, "capacity": r.capacity, "price": str(r.price)}
        for r in mine.values()
        if r.valid_until >= now - 3600
    ]
    return {
        "orders": open_orders,
        "bids": recent,
        "leases": [
            market_leases.lease_json(r) for r in market_leases.provider_leases(conn, provider)
        ],
    }


# ---- clearing -------------------------------------------------------------------------


def set_order_state(
    conn: Connection,
    order_id: str,
    current: OrderState,
    target: OrderState,
    now: float,
    clearing_price: int | None = None,
    reason: str | None = None,
    explanation: dict[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {"state": target.value, "cleared_at": now}
    if clearing_price is not None:
        values["clearing_price"] = clearing_price
    if reason is not None:
        values["reason"] = reason
        values["explanation"] = explanation
    res = conn.execute(
        update(tm.orders)
        .where(tm.orders.c.id == order_id, tm.orders.c.state == current.value)
        .values(**values)
    )
    if res.rowcount != 1:
        raise Conflict(f"order {order_id} changed state meanwhile")


def due_orders(conn: Connection, now: float, cover: int, limit: int = 100) -> list[str]:
    """Open orders whose window closed or whose bids already cover them ``cover`` times."""
    rows = list(
        conn.execute(
            select(tm.orders)
            .where(tm.orders.c.state == OrderState.OPEN.value)
            .order_by(tm.orders.c.closes_at)
            .limit(limit)
        )
    )
    due = []
    for row in rows:
        if row.closes_at <= now or ready_to_clear(
            order_of(row), order_bids(conn, row.id, ["open"]), now, cover
        ):
            due.append(row.id)
    return due


def clear_order(conn: Connection, order_id: str, now: float, settings: Any) -> str | None:
    """Clear one order if it is due and nobody else holds it; returns its new state, or
    None when it is not due or another coordinator has it."""
    q = select(tm.orders).where(tm.orders.c.id == order_id, tm.orders.c.state == "open")
    if conn.dialect.name == PG:
        q = q.with_for_update(skip_locked=True)
    row = conn.execute(q).first()
    if row is None:
        return None
    order = order_of(row)
    bids = order_bids(conn, order_id, ["open"])
    if not ready_to_clear(order, bids, now, settings.market_cover):
        return None
    views = provider_views(conn, order.kind, now, settings.assignment_ttl_s)
    result = clear(order, bids, views, now, cover=settings.market_cover)
    if isinstance(result, Award):
        set_order_state(
            conn, order_id, OrderState.OPEN, OrderState.AWARDED, now, result.clearing_price
        )
        apply_award(conn, order, result, now, settings)
        return OrderState.AWARDED.value
    give_up(conn, order, explain(conn, order, bids, views, result, now), now)
    return OrderState.NO_MATCH.value


def explain(
    conn: Connection,
    order: Order,
    bids: list[Bid],
    views: dict[str, ProviderView],
    result: NoMatchResult | None,
    now: float,
) -> NoMatchResult:
    """The fullest explanation of a no-match: the funnel over every online provider (with
    the asks and bids seen), led by what the auction itself found."""
    asks = [
        Ask(
            r.provider, r.gpu_class, r.region, r.price, r.capacity, r.valid_until, OrderKind(r.kind)
        )
        for r in conn.execute(select(tm.asks).where(tm.asks.c.kind == order.kind.value))
    ]
    funnel = explain_no_match(order, views.values(), asks, bids, now)
    reasons = tuple(dict.fromkeys((*(result.reasons if result else ()), *funnel.reasons)))
    return replace(funnel, reasons=reasons or ("no match",))


def give_up(conn: Connection, order: Order, why: NoMatchResult, now: float) -> None:
    """Close an order that cannot clear and return the buyer's escrow, with the reason."""
    from gpudepin.coordinator import service

    err = why.to_error()
    row = get_order_row(conn, order.id)
    set_order_state(
        conn,
        order.id,
        OrderState(row.state),
        OrderState.NO_MATCH,
        now,
        reason=err.message,
        explanation={**err.details},
    )
    reason = f"no match: {err.message}"
    if order.kind is OrderKind.BATCH:
        service.fail_job(conn, order.id, reason, now)
    else:
        refund = ledger.refund_escrow(
            store.lock_balances(conn, [ledger.escrow_account(order.buyer, order.id)]),
            order.buyer,
            order.id,
        )
        store.apply(conn, refund, now)
    store.record(
        conn,
        now,
        "order_no_match",
        job_id=order.id if order.kind is OrderKind.BATCH else None,
        actor=order.buyer,
        order_id=order.id,
        reason=err.message,
    )


def apply_award(conn: Connection, order: Order, award: Award, now: float, settings: Any) -> None:
    """Write an award: winners' rows, bid outcomes, clearing prints and, for a lease, the
    pending lease its provider must start."""
    from gpudepin.coordinator import market_leases

    winners = {a.provider for a in award.allocations}
    # a winner of an earlier round that lapsed and came back wins a fresh award
    conn.execute(
        tm.awards.delete().where(
            tm.awards.c.order_id == order.id, tm.awards.c.provider.in_(winners)
        )
    )
    for a in award.allocations:
        conn.execute(
            insert(tm.awards).values(
                order_id=order.id,
                provider=a.provider,
                quantity=a.quantity,
                price=a.price,
                gpu_class=a.gpu_class,
                region=a.region,
                awarded_at=now,
                start_by=now + settings.market_start_timeout_s,
                instant=int(award.instant),
                state="active",
            )
        )
        conn.execute(
            insert(tm.prints).values(
                kind=order.kind.value,
                gpu_class=a.gpu_class,
                region=a.region,
                price=a.price,
                quantity=a.quantity,
                at=now,
            )
        )
    conn.execute(
        update(tm.bids)
        .where(tm.bids.c.order_id == order.id, tm.bids.c.provider.in_(winners))
        .values(state="won")
    )
    conn.execute(
        update(tm.bids)
        .where(tm.bids.c.order_id == order.id, tm.bids.c.state == "open")
        .values(state="lost")
    )
    store.record(
        conn,
        now,
        "order_awarded",
        job_id=order.id if order.kind is OrderKind.BATCH else None,
        actor=order.buyer,
        order_id=order.id,
        instant=award.instant,
        clearing_price=str(award.clearing_price),
        winners={
            a.provider: {"quantity": a.quantity, "price": str(a.price)} for a in award.allocations
        },
        unfilled=award.unfilled,
    )
    if order.kind is OrderKind.LEASE:
        market_leases.create_from_award(conn, order, award, now, settings)


# ---- claims by winners ----------------------------------------------------------------


def claimable_by(job_id: Any, provider: str) -> ColumnElement[bool]:
    """SQL condition: ``provider`` may claim tasks of the job whose id is ``job_id``. A job
    without a market order (posted-price mode) is open to all; a job with one only to
    its active winners."""
    has_order = exists().where(tm.orders.c.id == job_id)
    won = exists().where(
        tm.awards.c.order_id == job_id,
        tm.awards.c.provider == provider,
        tm.awards.c.state == "active",
    )
    return or_(~has_order, won)


def on_claimed(conn: Connection, tasks: list[Any], provider: str, now: float) -> bool:
    """Price just-claimed tasks at their winner's bid per unit and mark its awards
    started; whether any was priced (tasks of jobs without an order keep their price)."""
    a = tm.awards.c
    job_ids = sorted({task.job_id for task in tasks})
    awards = {r.order_id: r for r in conn.execute(_AWARDS_OF, {"ids": job_ids, "who": provider})}
    if not awards:
        return False
    for task in tasks:
        award = awards.get(task.job_id)
        if award is not None:
            units = int(task.spec.get("units", 1))
            conn.execute(
                update(db.tasks).where(db.tasks.c.id == task.id).values(price=award.price * units)
            )
    for award in awards.values():
        if award.started_at is None:
            conn.execute(
                update(tm.awards)
                .where(a.order_id == award.order_id, a.provider == provider)
                .values(started_at=now)
            )
    return True


# built once: it runs on every claim, with or without an auction
_AWARDS_OF = select(tm.awards).where(
    tm.awards.c.order_id.in_(bindparam("ids", expanding=True)),
    tm.awards.c.provider == bindparam("who"),
)


def lapse_awards(conn: Connection, now: float, settings: Any) -> int:
    """Winners of batch orders lose their award when the job has work pending and they never
    started in time, went silent, or sat idle on it while a task waited past the start
    timeout (a winner the trust layer no longer lets redo a rejected task, say); the order
    is auctioned again (``rerun_auction``). Returns the awards lapsed."""
    from gpudepin.coordinator import service

    silent = now - 2 * settings.assignment_ttl_s  # its tasks were requeued by now
    q = (
        select(tm.awards, db.providers.c.last_seen)
        .join(tm.orders, tm.orders.c.id == tm.awards.c.order_id)
        .join(db.providers, db.providers.c.address == tm.awards.c.provider)
        .join(db.jobs, db.jobs.c.id == tm.awards.c.order_id)
        .where(
            tm.awards.c.state == "active",
            tm.orders.c.kind == OrderKind.BATCH.value,
            db.jobs.c.state.not_in([s.value for s in TERMINAL_JOB_STATES]),
        )
    )
    lapsed = 0
    for a in list(conn.execute(q)):
        tasks = service.job_tasks(conn, a.order_id)
        pending = [t for t in tasks if t.state == TaskState.PENDING.value]
        if not pending:
            continue  # nothing was left to start: the other winners did it all
        never = a.started_at is None and a.start_by < now
        idle = not any(
            t.state == TaskState.ASSIGNED.value and t.provider == a.provider for t in tasks
        )
        waiting_since = max(min(t.updated_at for t in pending), a.awarded_at)
        stale = waiting_since < now - settings.market_start_timeout_s
        if not (never or a.last_seen < silent or (idle and stale)):
            continue
        conn.execute(
            update(tm.awards)
            .where(tm.awards.c.order_id == a.order_id, tm.awards.c.provider == a.provider)
            .values(state="lapsed")
        )
        conn.execute(
            update(tm.bids)
            .where(tm.bids.c.order_id == a.order_id, tm.bids.c.provider == a.provider)
            .values(state="lapsed")
        )
        store.record(
            conn, now, "award_lapsed", job_id=a.order_id, actor=a.provider, order_id=a.order_id
        )
        lapsed += 1
        rerun_auction(conn, a.order_id, a.quantity, now, settings)
    return lapsed


def rerun_auction(
    conn: Connection, order_id: str, quantity: int, now: float, settings: Any
) -> Award | None:
    """Award ``quantity`` units of an order again among the bids that lost before. When
    none can take them and no winner is left, the order opens again for a fresh window
    (providers that came online meanwhile may bid); one that already had its second
    chance gives up with the reason."""
    row = get_order_row(conn, order_id)
    order = replace(order_of(row), quantity=quantity, state=OrderState.OPEN)
    gone = {
        r.provider for r in conn.execute(select(tm.awards).where(tm.awards.c.order_id == order_id))
    }
    bids = order_bids(conn, order_id, ["lost"])
    views = provider_views(conn, order.kind, now, settings.assignment_ttl_s)
    result = reaward(order, bids, gone, views, now)
    if isinstance(result, Award):
        apply_award(conn, order, result, now, settings)
        return result
    still = conn.execute(
        select(tm.awards.c.provider).where(
            tm.awards.c.order_id == order_id, tm.awards.c.state == "active"
        )
    ).first()
    if still is not None:
        return None
    if (row.reason or "").startswith(REOPENED):  # it had its second chance
        give_up(conn, order, explain(conn, order, bids, views, result, now), now)
        return None
    conn.execute(
        update(tm.orders)
        .where(tm.orders.c.id == order_id)
        .values(
            state=OrderState.OPEN.value,
            created_at=now,
            closes_at=now + row.bid_window_s,
            reason=f"{REOPENED}: its winners left before the work was done",
        )
    )
    store.record(conn, now, "order_reopened", actor=order.buyer, order_id=order_id)
    return None


# ---- jobs and the periodic duty -------------------------------------------------------


def open_job_order(
    conn: Connection,
    *,
    job_id: str,
    buyer: str,
    max_price_per_unit: int,
    units: int,
    gpu: str | None,
    min_vram_gb: float,
    tier: str,
    regions: list[str] | None,
    task_seconds: float,
    now: float,
    settings: Any,
) -> Award | None:
    """Turn a just-created batch job into an order (same id): validated, stored, and filled
    at once when standing asks can; otherwise its tasks wait for the auction's winners."""
    req = Requirements(
        gpu_class=gpu or None,
        min_vram_gb=min_vram_gb,
        tier=Tier.ENTERPRISE if tier == Tier.ENTERPRISE.value else None,
        regions=None if regions is None else tuple(regions),
    )
    order = build_order(
        order_id=job_id,
        kind=OrderKind.BATCH,
        buyer=buyer,
        requirements=req,
        max_price=max_price_per_unit,
        quantity=units,
        now=now,
        settings=settings,
        task_seconds=task_seconds,
    )
    return open_order(conn, order, now, settings=settings)


def open_for_job(
    conn: Connection,
    settings: Any,
    job_id: str,
    buyer: str,
    body: Any,
    terms: Any,
    plans: list[Any],
    now: float,
) -> Award | None:
    """``open_job_order`` for a job submission (``schemas.JobIn`` and its parsed terms):
    one unit per frame of every task, regions as the job's residency allows."""
    from gpudepin.coordinator import enterprise
    from gpudepin.core.money import parse_amount

    regions = None if terms.residency.unrestricted else enterprise.allowed_regions(terms.residency)
    return open_job_order(
        conn,
        job_id=job_id,
        buyer=buyer,
        max_price_per_unit=parse_amount(body.price_per_task),
        units=sum(int(p.spec.get("units", 1)) for p in plans),
        gpu=body.gpu_class,
        min_vram_gb=body.min_vram_gb,
        tier=terms.tier,
        regions=regions,
        task_seconds=body.task_seconds,
        now=now,
        settings=settings,
    )


def job_market(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """A job's auction as its page shows it; None for a posted-price job."""
    row = conn.execute(select(tm.orders).where(tm.orders.c.id == job_id)).first()
    if row is None:
        return None
    from gpudepin.core.money import format_amount

    awards = conn.execute(select(tm.awards).where(tm.awards.c.order_id == job_id))
    bids = conn.execute(select(tm.bids.c.provider).where(tm.bids.c.order_id == job_id))
    return {
        "order_state": row.state,
        "max_price": format_amount(row.max_price),
        "closes_at": row.closes_at,
        "bids": len(list(bids)),
        "clearing_price": None if row.clearing_price is None else format_amount(row.clearing_price),
        "winners": [
            {
                "provider": a.provider,
                "quantity": a.quantity,
                "price": format_amount(a.price),
                "state": a.state,
                "instant": bool(a.instant),
            }
            for a in awards
        ],
        "reason": row.reason,
        "explanation": row.explanation,
    }


def market_duty(rt: Runtime) -> None:
    """Clear due orders, take awards from winners that never started, bill-stop leases."""
    settings = rt.settings
    now = rt.clock()
    with rt.reader.connect() as conn:
        due = due_orders(conn, now, settings.market_cover)
    woke = False
    for order_id in due:
        try:
            with rt.engine.begin() as conn:
                woke |= clear_order(conn, order_id, now, settings) == OrderState.AWARDED.value
        except GpudepinError as exc:  # another coordinator got there first, say
            log.info("clearing order %s: %s", order_id, exc)
    with rt.engine.begin() as conn:
        woke |= lapse_awards(conn, now, settings) > 0
    from gpudepin.coordinator import market_leases

    with rt.engine.begin() as conn:
        market_leases.tick_leases(conn, now, settings)
    if woke:
        rt.notify_work()
