"""Routes of the spot market: quotes, market data, bids, standing asks and leases.

Buyer-facing prices are tokens as text (per task unit, or per GPU-hour for leases); the
provider side (bids, asks, receipts) speaks base units, the numbers it signs.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from gpudepin.coordinator import ai, lease_replicas, lease_sla, market, market_leases, market_spot
from gpudepin.coordinator import tables_market as tm
from gpudepin.coordinator.api import caller, runtime
from gpudepin.coordinator.app import Runtime
from gpudepin.core.errors import Forbidden, InvalidInput
from gpudepin.core.market import (
    Allocation,
    Award,
    Bid,
    NoMatchResult,
    Order,
    OrderKind,
    bid_message,
    display_price,
    requirements_of,
)
from gpudepin.core.money import fee_of, format_amount, parse_amount
from gpudepin.core.orderbook import PriceTape, best_asks
from gpudepin.identity import recover_signer

router = APIRouter(prefix="/v1")


class RequirementsIn(BaseModel):
    gpu_class: str | None = Field(default=None, description="a catalog class, e.g. rtx4090")
    min_vram_gb: float = 0.0
    min_tflops: float = 0.0
    tier: str | None = Field(default=None, description="consumer or enterprise (a minimum)")
    regions: list[str] | None = Field(default=None, description="allowed regions; null = any")


class LeaseIn(RequirementsIn):
    max_price_per_hour: str = Field(description="tokens per GPU-hour at most")
    duration_s: int = Field(description="seconds of GPU time")
    gpus: int = Field(default=1)
    workload: str = Field(default="", description="what runs on the lease; empty = bare GPU")
    uptime: float | None = Field(
        default=None, description="uptime SLA target in percent (enterprise default 99.9)"
    )
    failover: bool | None = Field(
        default=None, description="re-auction at once if the provider dies (enterprise default)"
    )
    replicas: int = Field(default=1, description="providers hosting a served endpoint at once")


class QuoteIn(RequirementsIn):
    kind: str = Field(description="batch (per task unit) or lease (per GPU-hour)")
    max_price: str = Field(description="tokens per task unit, or per GPU-hour for a lease")
    quantity: int = Field(default=1, description="task units (batch) or GPUs (lease)")
    duration_s: int = 0
    task_seconds: float = 0.0


class BidIn(BaseModel):
    price: str = Field(description="base units per unit (task or GPU-second)")
    capacity: int
    valid_until: float
    signature: str = Field(max_length=200)


class AskIn(BaseModel):
    kind: str = "lease"
    price: str = Field(description="base units per task, or per GPU-second for leases")
    capacity: int
    valid_until: float


class ReceiptIn(BaseModel):
    cumulative_seconds: int
    at: float
    signature: str = Field(max_length=200)


def _units(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidInput(f"{what}: expected base units as an integer, got {text!r}") from None
    return value


def _amount(text: str, what: str) -> int:
    try:
        return parse_amount(text)
    except InvalidInput as exc:
        raise InvalidInput(f"{what}: {exc.message}", hint=exc.hint, field=what) from None


def _per_second(per_hour: str) -> int:
    """Tokens per GPU-hour to base units per GPU-second (rounded down, never to zero)."""
    value = _amount(per_hour, "max_price") // 3600
    if value <= 0:
        raise InvalidInput(
            f"max_price: {per_hour} per hour is less than one base unit per second",
            field="max_price",
        )
    return value


def _requirements(body: RequirementsIn) -> Any:
    return requirements_of(body.model_dump())


def _fee_view(order: Order, cost: int, fee_bps: int) -> dict[str, Any]:
    fee = fee_of(cost, fee_bps)
    return {
        "cost": format_amount(cost),
        "fee": format_amount(fee),
        "fee_bps": fee_bps,
        "provider_gets": format_amount(cost - fee),
    }


# ---- buyers ---------------------------------------------------------------------------


@router.post("/quote")
def quote(body: QuoteIn, rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Dry run: would this order clear now, at what price, and if not, why (in numbers)."""
    try:
        kind = OrderKind(body.kind)
    except ValueError:
        raise InvalidInput(
            f"kind: unknown order kind {body.kind!r}", hint="Use batch or lease."
        ) from None
    max_price = (
        _per_second(body.max_price)
        if kind is OrderKind.LEASE
        else _amount(body.max_price, "max_price")
    )
    now = rt.clock()
    order = market.build_order(
        order_id="quote",
        kind=kind,
        buyer="0x" + "0" * 40,
        requirements=_requirements(body),
        max_price=max_price,
        quantity=body.quantity,
        duration_s=body.duration_s,
        task_seconds=body.task_seconds,
        now=now,
        settings=rt.settings,
    )
    with rt.reader.connect() as conn:
        views = market.provider_views(conn, kind, now, rt.settings.assignment_ttl_s)
        why = market.explain(conn, order, [], views, None, now)
        rows = market_spot.ask_rows(conn, kind, now)
    book = market_spot.load_book(rows, [a for a, v in views.items() if v.free_capacity > 0])
    instant = book.match_instant(order, now)
    out: dict[str, Any] = {
        "kind": kind.value,
        "max_price": display_price(order, order.max_price),
        "quantity": order.quantity,
        "duration_s": order.duration_s,
        "instant": instant is not None,
        "reasons": list(why.reasons) if instant is None else [],
        "funnel": dict(why.funnel),
        "lowest_price": None
        if why.lowest_price is None
        else display_price(order, why.lowest_price),
        "suggested_max_price": None
        if why.suggested_max_price is None
        else display_price(order, why.suggested_max_price),
        "bid_window_s": order.bid_window_s,
        "escrow": format_amount(order.max_price * order.quantity * (order.duration_s or 1)),
        "at_max": _fee_view(
            order, order.max_price * order.quantity * (order.duration_s or 1), rt.settings.fee_bps
        ),
    }
    if instant is not None:
        out["clearing_price"] = display_price(order, instant.clearing_price)
        out["at_clearing"] = _fee_view(order, instant.cost, rt.settings.fee_bps)
    out["would_match"] = instant is not None or not out["reasons"] or _only_needs_bids(why)
    return out


def _only_needs_bids(why: NoMatchResult) -> bool:
    """Without standing asks a quote cannot price the order, yet eligible providers that
    are free will see it and may bid: the funnel stopped only at the price stage."""
    return bool(why.reasons) and "none has posted an ask or bid" in why.reasons[0]


@router.get("/market")
def market_data(window_s: float = 3600.0, rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Best standing asks and recent clearing prices per kind, GPU class and region."""
    now = rt.clock()
    with rt.reader.connect() as conn:
        views = {}
        for kind in OrderKind:
            views.update(market.provider_views(conn, kind, now, rt.settings.assignment_ttl_s))
        book = market_spot.load_book(
            conn.execute(select(tm.asks).where(tm.asks.c.valid_until >= now)), views
        )
        tape = PriceTape()
        q = select(tm.prints).where(tm.prints.c.at >= now - window_s).order_by(tm.prints.c.id)
        open_orders = len(
            list(conn.execute(select(tm.orders.c.id).where(tm.orders.c.state == "open")))
        )
        rows = list(conn.execute(q))
    for r in rows:
        kind = OrderKind(r.kind)
        tape.record(
            Award(
                "",
                kind,
                (Allocation("", r.quantity, r.price, r.gpu_class, r.region),),
                r.price,
                r.at,
            )
        )

    def price(kind: OrderKind, p: int) -> str:
        return (
            format_amount(p * 3600) + "/h"
            if kind is OrderKind.LEASE
            else format_amount(p) + "/task"
        )

    return {
        "at": now,
        "open_orders": open_orders,
        "providers_online": len(views),
        "best_asks": [
            {
                "kind": b.kind.value,
                "gpu_class": b.gpu_class,
                "region": b.region,
                "price": price(b.kind, b.price),
                "price_units": str(b.price),
                "providers": b.providers,
                "capacity": b.capacity,
            }
            for b in best_asks(book, now)
        ],
        "recent": [
            {
                "kind": s.kind.value,
                "gpu_class": s.gpu_class,
                "region": s.region,
                "last": price(s.kind, s.last),
                "low": price(s.kind, s.low),
                "high": price(s.kind, s.high),
                "vwap": price(s.kind, s.vwap),
                "prints": s.prints,
                "quantity": s.quantity,
            }
            for s in tape.summary(now, window_s)
        ],
    }


@router.get("/orders/{order_id}")
def show_order(
    order_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """An order's auction: state, bids received, winners and prices, or why it failed."""
    with rt.reader.connect() as conn:
        row = market.get_order_row(conn, order_id)
        if row.buyer != who:
            raise Forbidden(f"order {order_id} belongs to another buyer")
        order = market.order_of(row)
        bids = market.order_bids(conn, order_id)
        awards = list(conn.execute(select(tm.awards).where(tm.awards.c.order_id == order_id)))
    return {
        **market.order_json(order),
        "state": row.state,
        "max_price_display": display_price(order, order.max_price),
        "reason": row.reason,
        "explanation": row.explanation,
        "clearing_price": None
        if row.clearing_price is None
        else display_price(order, row.clearing_price),
        "bids": len(bids),
        "awards": [
            {
                "provider": a.provider,
                "quantity": a.quantity,
                "price": display_price(order, a.price),
                "state": a.state,
                "instant": bool(a.instant),
            }
            for a in awards
        ],
    }


@router.post("/leases", status_code=201)
def create_lease(
    body: LeaseIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Lock the whole lease's escrow and run its auction (instantly on standing asks)."""
    now = rt.clock()
    order = market.build_order(
        order_id=market.new_lease_order_id(),
        kind=OrderKind.LEASE,
        buyer=who,
        requirements=_requirements(body),
        max_price=_per_second(body.max_price_per_hour),
        quantity=body.gpus,
        duration_s=body.duration_s,
        now=now,
        settings=rt.settings,
    )
    workload = market_leases.check_workload(body.workload)
    terms = lease_sla.terms_for(body.tier, body.uptime, body.failover, body.replicas)
    with rt.engine.begin() as conn:
        ai.check_serve(conn, workload, who)  # a served model must exist and be the buyer's
        market_leases.lock_lease_escrow(conn, order, now)
        if terms is not None:
            lease_sla.attach(conn, order.id, terms)
        market.open_order(conn, order, now, settings=rt.settings, workload={"name": workload})
        if terms is not None and terms["replicas"] > 1:
            lease_replicas.open_replicas(conn, order, workload, terms, now, rt.settings)
    rt.notify_work()  # agents long-polling for market work hear of it at once
    with rt.reader.connect() as conn:
        return _lease_view(conn, order.id, rt)


def _lease_view(conn: Any, order_id: str, rt: Runtime) -> dict[str, Any]:
    order = market.get_order_row(conn, order_id)
    lease = conn.execute(
        select(tm.leases)
        .where(tm.leases.c.order_id == order.id)
        .order_by(tm.leases.c.awarded_at.desc())
    ).first()
    view = market_leases.lease_order_json(order, lease)
    view["fee_bps"] = rt.settings.fee_bps
    view["escrow"] = format_amount(order.max_price * order.quantity * order.duration_s)
    return view


@router.get("/leases")
def list_leases(
    role: str = "buyer", who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> list[dict[str, Any]]:
    """Your lease orders as a buyer, or (role=provider) the leases you are running."""
    with rt.reader.connect() as conn:
        if role == "provider":
            return [market_leases.lease_json(r) for r in market_leases.provider_leases(conn, who)]
        return market_leases.buyer_leases(conn, who)


@router.get("/leases/{lease_id}")
def show_lease(
    lease_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.reader.connect() as conn:
        order = market.get_order_row(conn, lease_id.split("-")[0])
        if who != order.buyer:
            lease = market_leases.current_lease(conn, lease_id)
            if lease.provider != who:
                raise Forbidden(f"lease {lease_id} is neither yours nor run by you")
        return _lease_view(conn, order.id, rt)


@router.post("/leases/{lease_id}/close")
def close_lease(
    lease_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        market_leases.close_lease(conn, who, lease_id, rt.clock())
        lease_replicas.close_replicas(conn, who, lease_id, rt.clock())
    with rt.reader.connect() as conn:
        return _lease_view(conn, lease_id.split("-")[0], rt)


# ---- providers ------------------------------------------------------------------------


@router.get("/market/work")
async def market_work(
    wait: float = 0.0,
    since: float = 0.0,
    who: str = Depends(caller),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Open orders this provider may bid on, its bids' outcomes, and the leases to run.
    A long poll: it answers at once when an order opened or a lease was awarded after
    ``since``, else after ``wait`` seconds, so a short bid window still hears every agent."""
    deadline = rt.clock() + max(0.0, min(wait, rt.settings.long_poll_s))

    def look() -> dict[str, Any]:
        with rt.reader.connect() as conn:
            work: dict[str, Any] = market.work_for(conn, who, rt.clock(), rt.settings)
        return work

    while True:  # the wait holds no thread (see api.poll)
        generation = rt.offers.generation
        work = await run_in_threadpool(look)
        fresh = any(o["created_at"] > since for o in work["orders"]) or any(
            x["awarded_at"] > since for x in work["leases"]
        )
        remaining = deadline - rt.clock()
        if fresh or remaining <= 0:
            return work
        await rt.offers.wait(generation, remaining)  # then one last look at the deadline


@router.post("/orders/{order_id}/bids", status_code=201)
def place_bid(
    order_id: str, body: BidIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """A sealed bid, signed over ``bid_message`` by the provider's key."""
    bid = Bid(
        order_id, who, _units(body.price, "price"), body.capacity, body.valid_until, body.signature
    )
    if recover_signer(bid_message(bid), body.signature) != who:
        raise Forbidden("the bid's signature is not yours", hint="Sign with the agent's key.")
    with rt.engine.begin() as conn:
        market.place_bid(conn, bid, rt.clock(), rt.settings)
    return {"order_id": order_id, "provider": who, "state": "open"}


@router.post("/market/asks", status_code=201)
def post_ask(
    body: AskIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Place or replace a standing ask for instant spot (capacity 0 withdraws it)."""
    with rt.engine.begin() as conn:
        return market_spot.post_ask(
            conn,
            who,
            kind=body.kind,
            price=_units(body.price, "price"),
            capacity=body.capacity,
            valid_until=body.valid_until,
            now=rt.clock(),
        )


@router.post("/leases/{lease_id}/start")
def start_lease(
    lease_id: str, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    with rt.engine.begin() as conn:
        row = market_leases.start_lease(conn, who, lease_id, rt.clock())
        lease_sla.note_delivery(conn, lease_id, rt.clock(), rt.settings.lease_sla_max_gap_s)
        return market_leases.lease_json(row)


@router.post("/leases/{lease_id}/receipts")
def usage_receipt(
    lease_id: str, body: ReceiptIn, who: str = Depends(caller), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """A signed usage receipt: cumulative delivered seconds; bills what is new."""
    with rt.engine.begin() as conn:
        row = market_leases.receipt(
            conn,
            who,
            lease_id,
            body.cumulative_seconds,
            body.at,
            body.signature,
            rt.clock(),
            rt.settings.fee_bps,
        )
        lease_sla.note_delivery(conn, lease_id, rt.clock(), rt.settings.lease_sla_max_gap_s)
    return market_leases.lease_json(row)
