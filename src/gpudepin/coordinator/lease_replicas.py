"""Replicas of a served lease: N providers host one endpoint, the gateway hedges across them.

``--replicas N`` on a lease that serves a model opens N-1 sibling lease orders next to the
buyer's (``ORDERr2``, ``ORDERr3``, ...), each with its own escrow, auction and terms, so
each replica is billed, measured and failed over like any lease. A machine whose GPUs a
lease holds has no capacity for another, so single-GPU providers never win two replicas
of one endpoint. The buyer keeps one address, the first order's: ``ai.lease_facts`` lists
the live leases of the whole group and the gateway's ``call_hedged`` relays across them.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, select

from gpudepin.coordinator import lease_sla, market, market_leases
from gpudepin.coordinator import tables_market as tm
from gpudepin.core.errors import Conflict, InvalidInput
from gpudepin.core.market import Order

REPLICA_MARK = "r"  # order ids are "l" + hex, so "r" only ever marks a replica


def open_replicas(
    conn: Connection, order: Order, workload: str, terms: dict[str, Any], now: float, settings: Any
) -> list[str]:
    """Open the sibling orders of a lease with ``terms["replicas"]`` > 1; returns their ids."""
    if not workload.startswith("serve:"):
        raise InvalidInput(
            "replicas: only a lease that serves a model runs replicas",
            hint="Add --serve embeddings (or a model.onnx), or leave --replicas at 1.",
            field="replicas",
        )
    ids = [f"{order.id}{REPLICA_MARK}{k}" for k in range(2, terms["replicas"] + 1)]
    for rid in ids:
        sibling = replace(order, id=rid)
        market_leases.lock_lease_escrow(conn, sibling, now)
        lease_sla.attach(conn, rid, terms)
        market.open_order(
            conn,
            sibling,
            now,
            settings=settings,
            workload={"name": workload, "replica_of": order.id},
        )
    return ids


def sibling_orders(conn: Connection, order_id: str) -> list[str]:
    """The replica orders opened beside ``order_id`` (none for a plain lease)."""
    q = select(tm.orders.c.id).where(tm.orders.c.id.like(f"{order_id}{REPLICA_MARK}%"))
    return [r.id for r in conn.execute(q.order_by(tm.orders.c.id))]


def live_replicas(conn: Connection, order_id: str) -> list[str]:
    """Active leases serving the endpoint of ``order_id``: its own first, then siblings'."""
    group = [order_id, *sibling_orders(conn, order_id)]
    q = select(tm.leases.c.id, tm.leases.c.order_id).where(
        tm.leases.c.order_id.in_(group), tm.leases.c.state == "active"
    )
    rows = sorted(conn.execute(q), key=lambda r: group.index(r.order_id))
    return [r.id for r in rows]


def close_replicas(conn: Connection, buyer: str, order_or_lease_id: str, now: float) -> None:
    """Closing the buyer's lease closes its replicas too (each refunds its own escrow)."""
    for sibling in sibling_orders(conn, order_or_lease_id.split("-")[0]):
        with contextlib.suppress(Conflict):  # that replica had already ended
            market_leases.close_lease(conn, buyer, sibling, now)
