"""Standing asks and instant spot on SQL rows: an order at or above the best asks that can
fill it clears at once from the ``market_asks`` of online providers, without a window."""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from gpudepin.coordinator import tables_market as tm
from gpudepin.coordinator.market import PG, provider_views
from gpudepin.core.errors import Conflict, InvalidInput
from gpudepin.core.hardware import Tier, gpu_class
from gpudepin.core.market import Ask, Award, Order, OrderKind
from gpudepin.core.orderbook import OrderBook

# above this many asks a loaded book is frozen out of the cyclic GC while it matches: the
# market benchmark (docs/benchmarks/market.md) shows collections of a big book's objects
# dominate p99 otherwise
FREEZE_AT = 10_000


# ---- instant spot ---------------------------------------------------------------------


def ask_rows(conn: Connection, kind: OrderKind, now: float) -> list[Any]:
    q = select(tm.asks).where(
        tm.asks.c.kind == kind.value, tm.asks.c.valid_until >= now, tm.asks.c.capacity > 0
    )
    if conn.dialect.name == PG:
        q = q.with_for_update()  # two instant matches must not spend the same capacity
    return list(conn.execute(q))


def load_book(rows: Iterable[Any], online: Iterable[str]) -> OrderBook:
    """An order book of the live asks of online providers."""
    alive = set(online)
    book = OrderBook()
    for r in rows:
        if r.provider in alive:
            book.post(
                Ask(
                    r.provider,
                    r.gpu_class,
                    r.region,
                    r.price,
                    r.capacity,
                    r.valid_until,
                    kind=OrderKind(r.kind),
                    tier=Tier(r.tier),
                )
            )
    return book


def match_instant(conn: Connection, order: Order, now: float, settings: Any) -> Award | None:
    """Fill ``order`` from standing asks at or below its maximum, spending their capacity."""
    rows = ask_rows(conn, order.kind, now)
    if not rows:
        return None
    views = provider_views(conn, order.kind, now, settings.assignment_ttl_s)
    online = [a for a, v in views.items() if v.free_capacity > 0]
    book = load_book(rows, online)
    frozen = len(book) >= FREEZE_AT
    if frozen:
        gc.freeze()
    try:
        award = book.match_instant(order, now)
    finally:
        if frozen:
            gc.unfreeze()
    if award is None:
        return None
    for a in award.allocations:
        res = conn.execute(
            update(tm.asks)
            .where(
                tm.asks.c.provider == a.provider,
                tm.asks.c.kind == order.kind.value,
                tm.asks.c.gpu_class == a.gpu_class,
                tm.asks.c.capacity >= a.quantity,
            )
            .values(capacity=tm.asks.c.capacity - a.quantity)
        )
        if res.rowcount != 1:
            raise Conflict("a standing ask changed while it was matched", hint="Submit again.")
    return award


def post_ask(
    conn: Connection,
    provider: str,
    *,
    kind: str,
    price: int,
    capacity: int,
    valid_until: float,
    now: float,
) -> dict[str, Any]:
    """Place or replace a provider's standing ask for its GPU class (capacity 0 withdraws)."""
    from gpudepin.coordinator import service

    row = service.require_provider(conn, provider)
    try:
        order_kind = OrderKind(kind)
    except ValueError:
        raise InvalidInput(
            f"kind: unknown order kind {kind!r}", hint="Use batch or lease."
        ) from None
    if price <= 0:
        raise InvalidInput(f"price: must be positive, got {price}", field="price")
    if capacity < 0:
        raise InvalidInput(f"capacity: must not be negative, got {capacity}", field="capacity")
    if valid_until <= now:
        raise InvalidInput("valid_until: the ask would already have expired", field="valid_until")
    key = and_(
        tm.asks.c.provider == provider,
        tm.asks.c.kind == order_kind.value,
        tm.asks.c.gpu_class == row.gpu_class,
    )
    conn.execute(tm.asks.delete().where(key))
    values = {
        "provider": provider,
        "kind": order_kind.value,
        "gpu_class": row.gpu_class,
        "region": row.region.lower(),
        "tier": gpu_class(row.gpu_class).tier.value,
        "price": price,
        "capacity": capacity,
        "valid_until": valid_until,
        "posted_at": now,
    }
    if capacity > 0:
        conn.execute(insert(tm.asks).values(**values))
    return {**values, "price": str(price)}
