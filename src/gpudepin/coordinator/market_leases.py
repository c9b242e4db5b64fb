"""GPU leases on SQL rows: created by an award, started by the winner's agent, billed per
second of delivered time from its signed usage receipts (``gpudepin.core.leases``).

The whole lease's escrow is locked under the order's id when the buyer asks for it. Each
receipt bills the new delivered seconds at the winner's price, less the protocol fee,
through the ledger; when receipts stop, ``tick_leases`` closes the lease after the grace
period and the rest of the escrow goes back to the buyer. ``workload`` names what runs on
the lease ("" for bare GPU time); the agent reads it from ``/v1/market/work``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from gpudepin.coordinator import store
from gpudepin.coordinator import tables_market as tm
from gpudepin.core import ledger
from gpudepin.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from gpudepin.core.leases import (
    TERMINAL_LEASE_STATES,
    Lease,
    LeaseState,
    UsageReceipt,
    accrue,
    close,
    escrow_for,
    lose,
    new_lease,
    receipt_message,
    start,
    tick,
)
from gpudepin.core.market import Award, Order, OrderKind, OrderState
from gpudepin.core.money import fee_of, format_amount
from gpudepin.identity import recover_signer

PG = "postgresql"
FINE = 12  # decimals shown for per-second amounts, which are small
_LIVE = [LeaseState.PENDING.value, LeaseState.ACTIVE.value]


def lease_of(row: Any) -> Lease:
    return Lease(
        id=row.id,
        escrow_ref=row.order_id,
        buyer=row.buyer,
        provider=row.provider,
        gpu_class=row.gpu_class,
        gpus=row.gpus,
        price=row.price,
        duration_s=row.duration_s,
        escrow=row.escrow,
        awarded_at=row.awarded_at,
        start_deadline=row.start_deadline,
        state=LeaseState(row.state),
        started_at=row.started_at,
        billed_seconds=row.billed_seconds,
        billed_amount=row.billed_amount,
        last_cumulative=row.last_cumulative,
        last_receipt_at=row.last_receipt_at,
        closed_at=row.closed_at,
        close_reason=row.close_reason,
        workload=row.workload,
    )


def _values(lease: Lease) -> dict[str, Any]:
    return {
        "state": lease.state.value,
        "started_at": lease.started_at,
        "billed_seconds": lease.billed_seconds,
        "billed_amount": lease.billed_amount,
        "last_cumulative": lease.last_cumulative,
        "last_receipt_at": lease.last_receipt_at,
        "closed_at": lease.closed_at,
        "close_reason": lease.close_reason,
    }


def lease_json(row: Any) -> dict[str, Any]:
    """A lease as buyers, providers and agents read it (amounts in tokens, rates both)."""
    return {
        "id": row.id,
        "order_id": row.order_id,
        "buyer": row.buyer,
        "provider": row.provider,
        "gpu_class": row.gpu_class,
        "gpus": row.gpus,
        "price_per_second": str(row.price),
        "price_per_hour": format_amount(row.price * 3600),
        "duration_s": row.duration_s,
        "escrow": format_amount(row.escrow),
        "state": row.state,
        "awarded_at": row.awarded_at,
        "start_deadline": row.start_deadline,
        "started_at": row.started_at,
        "billed_seconds": row.billed_seconds,
        "billed": format_amount(row.billed_amount, FINE),
        "fees": format_amount(row.fees, FINE),
        "provider_earned": format_amount(row.billed_amount - row.fees, FINE),
        "last_receipt_at": row.last_receipt_at,
        "closed_at": row.closed_at,
        "close_reason": row.close_reason,
        "workload": row.workload,
    }


def lock_lease_escrow(conn: Connection, order: Order, now: float) -> int:
    """Lock the whole lease's escrow (maximum x GPUs x duration) under the order's id."""
    amount = escrow_for(order)
    txn = ledger.lock_escrow(
        store.lock_balances(conn, [ledger.available_account(order.buyer)]),
        order.buyer,
        order.id,
        amount,
    )
    store.apply(conn, txn, now)
    return amount


def create_from_award(
    conn: Connection, order: Order, award: Award, now: float, settings: Any
) -> str:
    """Insert the pending lease an award creates; a re-award gets a new id."""
    count = len(list(conn.execute(select(tm.leases.c.id).where(tm.leases.c.order_id == order.id))))
    row = conn.execute(select(tm.orders.c.workload).where(tm.orders.c.id == order.id)).first()
    workload = (row.workload or {}).get("name", "") if row is not None else ""
    lease = new_lease(
        order,
        award,
        now,
        escrow=escrow_for(order),
        lease_id=order.id if count == 0 else f"{order.id}-{count + 1}",
        start_timeout_s=settings.market_start_timeout_s,
    )
    lease = replace(lease, workload=workload)
    conn.execute(
        insert(tm.leases).values(
            id=lease.id,
            order_id=order.id,
            buyer=lease.buyer,
            provider=lease.provider,
            gpu_class=lease.gpu_class,
            gpus=lease.gpus,
            price=lease.price,
            duration_s=lease.duration_s,
            escrow=lease.escrow,
            awarded_at=now,
            start_deadline=lease.start_deadline,
            state=lease.state.value,
            billed_seconds=0,
            billed_amount=0,
            fees=0,
            last_cumulative=0,
            close_reason="",
            workload=lease.workload,
        )
    )
    store.record(conn, now, "lease_awarded", actor=lease.provider, lease_id=lease.id)
    return lease.id


def _locked(conn: Connection, lease_id: str) -> Any:
    q = select(tm.leases).where(tm.leases.c.id == lease_id)
    if conn.dialect.name == PG:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no lease {lease_id}", hint="List yours with `gpudepin lease list`.")
    return row


def _save(conn: Connection, lease: Lease, expected_state: str) -> None:
    res = conn.execute(
        update(tm.leases)
        .where(tm.leases.c.id == lease.id, tm.leases.c.state == expected_state)
        .values(**_values(lease))
    )
    if res.rowcount != 1:
        raise Conflict(f"lease {lease.id} changed meanwhile")


def current_lease(conn: Connection, order_or_lease_id: str) -> Any:
    """The newest lease of an order (or the lease of that id)."""
    q = (
        select(tm.leases)
        .where((tm.leases.c.order_id == order_or_lease_id) | (tm.leases.c.id == order_or_lease_id))
        .order_by(tm.leases.c.awarded_at.desc())
    )
    row = conn.execute(q).first()
    if row is None:
        raise NotFound(
            f"no lease {order_or_lease_id} yet",
            hint="A lease appears once its auction cleared; see `gpudepin lease show`.",
        )
    return row


def provider_leases(conn: Connection, provider: str) -> list[Any]:
    q = select(tm.leases).where(tm.leases.c.provider == provider, tm.leases.c.state.in_(_LIVE))
    return list(conn.execute(q.order_by(tm.leases.c.awarded_at)))


def holding(conn: Connection) -> dict[str, list[str]]:
    """Provider address -> ids of the live leases holding its GPUs (for status views)."""
    out: dict[str, list[str]] = {}
    for r in conn.execute(select(tm.leases).where(tm.leases.c.state.in_(_LIVE))):
        out.setdefault(r.provider, []).append(r.id)
    return out


def start_lease(conn: Connection, provider: str, lease_id: str, now: float) -> Any:
    row = _locked(conn, lease_id)
    if row.provider != provider:
        raise Forbidden(f"lease {lease_id} was awarded to another provider")
    if row.state == LeaseState.ACTIVE.value:
        return row  # a retried start is harmless
    lease = start(lease_of(row), now)
    _save(conn, lease, row.state)
    conn.execute(
        update(tm.awards)
        .where(tm.awards.c.order_id == row.order_id, tm.awards.c.provider == provider)
        .values(started_at=now)
    )
    store.record(conn, now, "lease_started", actor=provider, lease_id=lease_id)
    return _locked(conn, lease_id)


def _end_lease(conn: Connection, lease: Lease, now: float) -> None:
    """After a lease ended: return its escrow's rest to the buyer, release the award."""
    txn = ledger.refund_escrow(
        store.lock_balances(conn, [ledger.escrow_account(lease.buyer, lease.escrow_ref)]),
        lease.buyer,
        lease.escrow_ref,
    )
    store.apply(conn, txn, now)
    conn.execute(
        update(tm.awards)
        .where(tm.awards.c.order_id == lease.escrow_ref, tm.awards.c.provider == lease.provider)
        .values(state="done")
    )
    store.record(
        conn,
        now,
        "lease_ended",
        actor=lease.provider,
        lease_id=lease.id,
        state=lease.state.value,
        reason=lease.close_reason,
        billed=str(lease.billed_amount),
        refunded=str(txn.postings[0].amount * -1) if txn else "0",
    )


def receipt(
    conn: Connection,
    provider: str,
    lease_id: str,
    cumulative_seconds: int,
    at: float,
    signature: str,
    now: float,
    fee_bps: int,
) -> Any:
    """Bill a signed usage receipt: the newly delivered seconds, less the protocol fee."""
    msg = receipt_message(UsageReceipt(lease_id, provider, cumulative_seconds, at))
    if recover_signer(msg, signature) != provider:
        raise Forbidden(
            "the usage receipt's signature is not yours", hint="Sign with the agent's key."
        )
    row = _locked(conn, lease_id)
    if row.provider != provider:
        raise Forbidden(f"lease {lease_id} belongs to another provider")
    if row.state in {s.value for s in TERMINAL_LEASE_STATES}:
        raise Conflict(f"lease {lease_id} is {row.state}", hint="Stop running it.")
    lease = lease_of(row)
    acc = accrue(lease, UsageReceipt(lease_id, provider, cumulative_seconds, at, signature), now)
    fee = 0
    if acc.amount > 0:
        fee = fee_of(acc.amount, fee_bps)
        pay = ledger.pay_from_escrow(
            store.lock_balances(conn, [ledger.escrow_account(lease.buyer, lease.escrow_ref)]),
            lease.buyer,
            lease.escrow_ref,
            provider,
            acc.amount,
            fee_bps,
            memo=f"lease {lease_id}: {acc.seconds} s x {lease.gpus} {lease.gpu_class}",
        )
        store.apply(conn, pay, now)
    _save(conn, acc.lease, row.state)
    conn.execute(
        update(tm.leases)
        .where(tm.leases.c.id == lease_id)
        .values(fees=row.fees + fee, last_signature=signature)
    )
    if acc.lease.state in TERMINAL_LEASE_STATES:
        _end_lease(conn, acc.lease, now)
    return _locked(conn, lease_id)


def close_lease(conn: Connection, buyer: str, order_or_lease_id: str, now: float) -> Any:
    """The buyer ends a lease early (or gives up an order still in auction): the unspent
    escrow returns to the buyer."""
    from gpudepin.coordinator import market

    order = market.get_order_row(conn, order_or_lease_id.split("-")[0])
    if order.buyer != buyer:
        raise Forbidden(f"lease {order_or_lease_id} belongs to another buyer")
    if order.state == "open":
        market.set_order_state(
            conn,
            order.id,
            OrderState.OPEN,
            OrderState.CANCELLED,
            now,
            reason="closed by the buyer before it cleared",
        )
        store.apply(
            conn,
            ledger.refund_escrow(
                store.lock_balances(conn, [ledger.escrow_account(buyer, order.id)]),
                buyer,
                order.id,
            ),
            now,
        )
        return None
    row = _locked(conn, current_lease(conn, order_or_lease_id).id)
    if row.state in {s.value for s in TERMINAL_LEASE_STATES}:
        raise Conflict(f"lease {row.id} is already {row.state}")
    lease = close(lease_of(row), now)
    _save(conn, lease, row.state)
    _end_lease(conn, lease, now)
    return _locked(conn, row.id)


def tick_leases(conn: Connection, now: float, settings: Any) -> int:
    """Close leases that time closes (no receipts for the grace period, duration over,
    never started); a lease whose winner never started is auctioned again."""
    from gpudepin.coordinator import market

    q = select(tm.leases).where(tm.leases.c.state.in_(_LIVE))
    if conn.dialect.name == PG:
        q = q.with_for_update(skip_locked=True)
    changed = 0
    for row in list(conn.execute(q)):
        lease = lease_of(row)
        after = tick(lease, now, settings.lease_grace_s)
        if after.state is lease.state:
            continue
        _save(conn, after, row.state)
        changed += 1
        store.record(
            conn, now, "lease_" + after.state.value, actor=lease.provider, lease_id=lease.id
        )
        if after.state is LeaseState.NOT_STARTED:
            conn.execute(
                update(tm.awards)
                .where(tm.awards.c.order_id == row.order_id, tm.awards.c.provider == row.provider)
                .values(state="lapsed")
            )
            order = market.get_order_row(conn, row.order_id)
            market.rerun_auction(conn, row.order_id, order.quantity, now, settings)
        elif after.state is LeaseState.PROVIDER_LOST:
            _after_lost(conn, after, now, settings)
        else:
            _end_lease(conn, after, now)
    return changed


def _after_lost(conn: Connection, lease: Lease, now: float, settings: Any) -> None:
    """A lease whose provider died fails over when its terms say so; else it ends and
    the rest of its escrow returns to the buyer."""
    from gpudepin.coordinator import lease_sla

    if not lease_sla.fail_over(conn, lease, now, settings):
        _end_lease(conn, lease, now)


def lose_lease(conn: Connection, lease_id: str, now: float, reason: str, settings: Any) -> None:
    """The coordinator's probes found the provider dead: end its lease (billed up to its
    last receipt) without waiting out the grace, and fail over if the terms say so."""
    row = _locked(conn, lease_id)
    if row.state != LeaseState.ACTIVE.value:
        return
    after = lose(lease_of(row), now, reason)
    _save(conn, after, row.state)
    store.record(conn, now, "lease_provider_lost", actor=row.provider, lease_id=lease_id)
    _after_lost(conn, after, now, settings)


def buyer_leases(conn: Connection, buyer: str, limit: int = 100) -> list[dict[str, Any]]:
    """The buyer's lease orders, newest first, each with its current lease (if any)."""
    q = (
        select(tm.orders)
        .where(tm.orders.c.buyer == buyer, tm.orders.c.kind == OrderKind.LEASE.value)
        .order_by(tm.orders.c.created_at.desc())
        .limit(limit)
    )
    out = []
    for o in conn.execute(q):
        lease = conn.execute(
            select(tm.leases)
            .where(tm.leases.c.order_id == o.id)
            .order_by(tm.leases.c.awarded_at.desc())
        ).first()
        out.append(lease_order_json(o, lease))
    return out


def lease_order_json(order: Any, lease: Any | None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": order.id,
        "order_state": order.state,
        "gpu_class": order.requirements.get("gpu_class"),
        "regions": order.requirements.get("regions"),
        "max_price_per_hour": format_amount(order.max_price * 3600),
        "duration_s": order.duration_s,
        "reason": order.reason,
        "explanation": order.explanation,
        "created_at": order.created_at,
        "closes_at": order.closes_at,
        "lease": None if lease is None else lease_json(lease),
    }
    view["state"] = lease.state if lease is not None else order.state
    return view


def check_workload(name: str) -> str:
    if len(name) > 200:
        raise InvalidInput("workload: at most 200 characters", field="workload")
    return name
