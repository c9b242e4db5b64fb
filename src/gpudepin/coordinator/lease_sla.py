"""Uptime SLA and failover of leases: the rules of ``core.sla`` applied to SQL rows.

A lease order may carry terms (``lease_terms``): an uptime target, whether it fails over,
and how many replicas serve it. Evidence of delivery is kept per order, across every
lease row a failover creates:

* the provider's signed usage receipts, stored as runs (``lease_alive``) like heartbeats;
* coordinator probes (``probe_duty``): for a served endpoint, a ``probe`` request relayed
  through the gateway to the agent and answered over its HTTP channel, the same path a
  buyer's request takes; for bare GPU time, the agent's heartbeat. Only changes of
  verdict are stored (``lease_probes``), which is all the outage rule needs.

A provider whose probes have failed for ``lease_failover_s``, or whose receipts stopped
for the grace, loses the lease (``provider_lost``, billed up to its last receipt). With
failover on, the order is auctioned again at once for the time that remains, on the
escrow that remains (``fail_over``); the endpoint keeps its address because the buyer
names the order, and ``ai.lease_facts`` resolves it to the order's newest lease.

When the order's last lease has ended, ``settle_leases`` measures the whole lease and a
breach pays the buyer by the published table, from each answerable provider's stake
through ``ledger.sla_credit_from_stake``, exactly once (a compare-and-set on
``settled_at`` comes before any money moves).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from gpudepin.coordinator import db, store
from gpudepin.coordinator import tables_market as tm
from gpudepin.coordinator.tables_enterprise import lease_alive, lease_probes, lease_terms
from gpudepin.core import ledger
from gpudepin.core.errors import Forbidden, GpudepinError, InvalidInput
from gpudepin.core.leases import TERMINAL_LEASE_STATES, Lease, LeaseState
from gpudepin.core.money import format_amount
from gpudepin.core.sla import Holder, LeaseSla, Probe, lease_sla, target_terms, uptime_terms

if TYPE_CHECKING:
    from gpudepin.coordinator.app import Runtime

_TERMINAL = {s.value for s in TERMINAL_LEASE_STATES}
MAX_REPLICAS = 8


def terms_for(
    tier: str | None, uptime: float | None, failover: bool | None, replicas: int
) -> dict[str, Any] | None:
    """The terms a lease request asks for; the enterprise tier defaults to 99.9% with
    failover. None when the lease is best effort (no row is written)."""
    if not 1 <= replicas <= MAX_REPLICAS:
        raise InvalidInput(
            f"replicas: expected 1 to {MAX_REPLICAS}, got {replicas}", field="replicas"
        )
    enterprise = tier == "enterprise"
    if uptime is None and enterprise:
        uptime = 99.9
    target = None if uptime is None else uptime_terms(uptime).uptime_target
    fails_over = enterprise if failover is None else failover
    if target is None and not fails_over and replicas == 1:
        return None
    return {"uptime_target": target, "failover": fails_over, "replicas": replicas}


def attach(conn: Connection, order_id: str, terms: dict[str, Any]) -> None:
    conn.execute(insert(lease_terms).values(order_id=order_id, **terms))


def terms_of(conn: Connection, order_id: str) -> Any | None:
    return conn.execute(select(lease_terms).where(lease_terms.c.order_id == order_id)).first()


def _order_of_lease(conn: Connection, lease_id: str) -> str | None:
    return conn.execute(select(tm.leases.c.order_id).where(tm.leases.c.id == lease_id)).scalar()


def note_delivery(conn: Connection, lease_id: str, now: float, max_gap: float) -> None:
    """A start or a usage receipt proves delivery: extend the order's run or open one."""
    order_id = _order_of_lease(conn, lease_id)
    if order_id is None or terms_of(conn, order_id) is None:
        return
    res = conn.execute(
        update(lease_alive)
        .where(
            lease_alive.c.order_id == order_id,
            lease_alive.c.lease_id == lease_id,
            lease_alive.c.ended_at >= now - max_gap,
        )
        .values(ended_at=now)
    )
    if not res.rowcount:
        conn.execute(
            insert(lease_alive).values(
                order_id=order_id, lease_id=lease_id, started_at=now, ended_at=now
            )
        )


def record_probe(
    conn: Connection, order_id: str, lease_id: str, at: float, ok: bool, detail: str
) -> float | None:
    """Store a probe's verdict if it changed; returns since when the lease's current
    provider has been failing probes (None while it answers)."""
    last = conn.execute(
        select(lease_probes)
        .where(lease_probes.c.order_id == order_id)
        .order_by(lease_probes.c.at.desc(), lease_probes.c.id.desc())
    ).first()
    changed = last is None or bool(last.ok) != ok or last.lease_id != lease_id
    if changed:
        conn.execute(
            insert(lease_probes).values(
                order_id=order_id, lease_id=lease_id, at=at, ok=ok, detail=detail[:200]
            )
        )
        store.record(conn, at, "lease_probe", lease_id=lease_id, ok=ok, detail=detail[:200])
    if ok:
        return None
    return at if changed or last is None else float(last.at)


def fail_over(conn: Connection, lease: Lease, now: float, settings: Any) -> bool:
    """Auction a lost lease again at once for what remains of it, keeping the escrow.

    Returns False when the lease does not fail over (no terms, or nothing remains); the
    caller then ends it as usual and the escrow's rest returns to the buyer.
    """
    from gpudepin.coordinator import market

    terms = terms_of(conn, lease.escrow_ref)
    order = market.get_order_row(conn, lease.escrow_ref)
    remaining = order.duration_s - lease.billed_seconds
    if terms is None or not terms.failover or remaining <= 0:
        return False
    for table in (tm.awards, tm.bids):
        conn.execute(
            update(table)
            .where(table.c.order_id == order.id, table.c.provider == lease.provider)
            .values(state="lapsed")
        )
    # the new lease is sized to the time left, so its escrow fits in what the buyer still
    # has locked (the dead provider billed at most its own seconds); a fresh reason lets
    # the order reopen for bids once more if no earlier bid can take it
    conn.execute(
        update(tm.orders)
        .where(tm.orders.c.id == order.id)
        .values(duration_s=remaining, reason=f"failed over from {lease.provider}")
    )
    store.record(
        conn,
        now,
        "lease_failover",
        actor=lease.provider,
        lease_id=lease.id,
        order_id=order.id,
        remaining_s=remaining,
        reason=lease.close_reason,
    )
    market.rerun_auction(conn, order.id, order.quantity, now, settings)
    return True


def refuse_lost_provider(conn: Connection, order_id: str, provider: str) -> None:
    """A provider that lost a lease of this order (it died, or its endpoint stopped
    answering) may not bid for it again: a flapping provider would otherwise win the
    re-auction and fail the buyer once more."""
    lost = conn.execute(
        select(tm.leases.c.id).where(
            tm.leases.c.order_id == order_id,
            tm.leases.c.provider == provider,
            tm.leases.c.state == "provider_lost",
        )
    ).first()
    if lost is not None:
        raise Forbidden(
            f"you lost lease {lost.id} of order {order_id}; it went to another provider",
            hint="Bid on other orders.",
        )


# ---- measurement and settlement ---------------------------------------------------------


def _leases(conn: Connection, order_id: str) -> list[Any]:
    q = select(tm.leases).where(tm.leases.c.order_id == order_id)
    return list(conn.execute(q.order_by(tm.leases.c.awarded_at, tm.leases.c.id)))


def measure(
    conn: Connection, order_id: str, terms: Any, now: float, settings: Any
) -> tuple[LeaseSla, list[Any]] | None:
    """The SLA of a lease order so far (or in full once its last lease ended); None
    before any of its leases started."""
    leases = _leases(conn, order_id)
    started = [r for r in leases if r.started_at is not None]
    if not started or terms.uptime_target is None:
        return None
    newest = leases[-1]
    end = newest.closed_at if newest.state in _TERMINAL else now
    if newest.started_at is not None:  # the time after the duration was never owed
        end = min(end, newest.started_at + newest.duration_s)
    start = started[0].started_at
    end = max(end, start)
    alive = list(conn.execute(select(lease_alive).where(lease_alive.c.order_id == order_id)))
    runs = [(r.started_at, r.ended_at) for r in alive]
    last_receipt: dict[str, float] = {}
    for r in alive:
        last_receipt[r.lease_id] = max(r.ended_at, last_receipt.get(r.lease_id, r.ended_at))
    lost = {r.id for r in leases if r.state == LeaseState.PROVIDER_LOST}
    lost_at = [at for lease_id, at in last_receipt.items() if lease_id in lost]
    probes = [
        Probe(r.at, bool(r.ok))
        for r in conn.execute(select(lease_probes).where(lease_probes.c.order_id == order_id))
    ]
    holders = [Holder(r.provider, r.awarded_at) for r in leases]
    fee = sum(r.billed_amount for r in leases)
    sla = lease_sla(
        runs,
        probes,
        holders,
        start,
        end,
        settings.lease_sla_max_gap_s,
        fee,
        target_terms(terms.uptime_target),
        lost_at,
    )
    return sla, leases


def _ended(conn: Connection, order_id: str) -> bool:
    order = conn.execute(select(tm.orders.c.state).where(tm.orders.c.id == order_id)).scalar()
    leases = _leases(conn, order_id)
    if order == "open":
        return False  # auctioned again after a failover: a new lease is coming
    return not leases or leases[-1].state in _TERMINAL


def settle_leases(conn: Connection, now: float, settings: Any) -> int:
    """Pay the buyers of ended leases that missed their uptime target, once each."""
    q = select(lease_terms).where(lease_terms.c.settled_at.is_(None))
    settled = 0
    for terms in list(conn.execute(q)):
        if not _ended(conn, terms.order_id):
            continue
        claimed = conn.execute(
            update(lease_terms)
            .where(lease_terms.c.order_id == terms.order_id, lease_terms.c.settled_at.is_(None))
            .values(settled_at=now, credit=0)
        )
        if claimed.rowcount != 1:
            continue  # another coordinator settled it
        settled += 1
        measured = measure(conn, terms.order_id, terms, now, settings)
        if measured is None:
            continue
        sla, leases = measured
        buyer = leases[0].buyer
        paid_total = 0
        for provider, owed in sla.charges:
            accounts = [ledger.stake_account(provider), ledger.unbonding_account(provider)]
            txn = ledger.sla_credit_from_stake(
                store.lock_balances(conn, accounts), provider, buyer, owed, ref=terms.order_id
            )
            store.apply(conn, txn, now)
            paid = -sum(p.amount for p in txn.postings if p.amount < 0) if txn else 0
            paid_total += paid
            store.record(
                conn,
                now,
                "sla_credit",
                actor=provider,
                lease_id=terms.order_id,
                owed=str(owed),
                paid=str(paid),
                uptime=round(sla.report.measured_uptime, 6),
            )
        conn.execute(
            update(lease_terms)
            .where(lease_terms.c.order_id == terms.order_id)
            .values(credit=paid_total)
        )
    return settled


def _pct(fraction: float) -> float:
    return round(fraction * 100, 4)


def report(conn: Connection, order_or_lease_id: str, who: str, now: float, settings: Any) -> Any:
    """``gpudepin lease sla``: measured uptime, each outage and what it cost whom. Only the
    buyer or a provider of one of the order's leases may read it."""
    from gpudepin.coordinator import market

    order = market.get_order_row(conn, order_or_lease_id.split("-")[0])
    leases = _leases(conn, order.id)
    if who != order.buyer and who not in {r.provider for r in leases}:
        raise Forbidden(f"lease {order_or_lease_id} is neither yours nor run by you")
    terms = terms_of(conn, order.id)
    view: dict[str, Any] = {
        "lease_id": order.id,
        "current_lease": leases[-1].id if leases else None,
        "state": leases[-1].state if leases else order.state,
        "buyer": order.buyer,
        "providers": [
            {"lease": r.id, "provider": r.provider, "state": r.state, "reason": r.close_reason}
            for r in leases
        ],
        "uptime_target": None,
        "failover": False,
        "replicas": 1,
        "measured_uptime": None,
        "outages": [],
        "fee_paid": format_amount(sum(r.billed_amount for r in leases), 12),
        "credit_owed": "0",
        "settled": False,
        "credited": None,
    }
    if terms is None:
        return {**view, "note": "best effort: this lease carries no uptime SLA"}
    view.update(
        uptime_target=None if terms.uptime_target is None else _pct(terms.uptime_target),
        failover=bool(terms.failover),
        replicas=terms.replicas,
        settled=terms.settled_at is not None,
        settled_at=terms.settled_at,
        credited=None if terms.credit is None else format_amount(terms.credit, 12),
    )
    measured = measure(conn, order.id, terms, now, settings)
    if measured is None:
        return view
    sla, _ = measured
    rep = sla.report
    view.update(
        window={"start": rep.start, "end": rep.end},
        measured_uptime=_pct(rep.measured_uptime),
        breached=rep.breached,
        credit_owed=format_amount(rep.credit, 12),
        outages=[
            {
                "start": o.start,
                "end": o.end,
                "duration_s": round(o.duration, 3),
                "source": o.cause,
                "provider": provider,
                "cost": format_amount(cost, 12),
                "paid_to": order.buyer,
            }
            for o, provider, cost in zip(rep.outages, sla.answerable, rep.outage_costs, strict=True)
        ],
        charges=[{"provider": p, "owed": format_amount(c, 12)} for p, c in sla.charges],
    )
    return view


# ---- probes and the duty ----------------------------------------------------------------


def _probe_served(rt: Runtime, lease_ids: list[str]) -> dict[str, tuple[bool, str]]:
    """Relay a probe to each serving agent through the gateway, like a buyer's request,
    all at once: a stalled endpoint costs the duty one probe timeout, not one each."""
    from gpudepin.coordinator.api_ai import gateway

    gw, timeout = gateway(rt), rt.settings.lease_probe_timeout_s

    async def one(lease_id: str) -> tuple[str, tuple[bool, str]]:
        try:
            await gw.probe(lease_id, timeout)
        except GpudepinError as exc:
            return lease_id, (False, exc.message)
        return lease_id, (True, "the endpoint answered")

    async def every() -> dict[str, tuple[bool, str]]:
        return dict(await asyncio.gather(*(one(i) for i in lease_ids)))

    return asyncio.run(every()) if lease_ids else {}


def _probe_agent(conn: Connection, provider: str, now: float, stale_s: float) -> tuple[bool, str]:
    seen = conn.execute(
        select(db.providers.c.last_seen).where(db.providers.c.address == provider)
    ).scalar()
    if seen is None or now - seen > stale_s:
        return False, "the agent stopped heartbeating"
    return True, "the agent heartbeats"


def probe_duty(rt: Runtime) -> None:
    """Probe live leases that carry terms, fail over dead providers, settle ended SLAs."""
    from gpudepin.coordinator import market_leases
    from gpudepin.workloads.serving import parse_serve

    settings, now = rt.settings, rt.clock()
    last = rt.caches.get("lease_probe_at")
    if last is None or now - last >= settings.lease_probe_s:
        rt.caches["lease_probe_at"] = now
        with rt.reader.connect() as conn:
            live = list(
                conn.execute(
                    select(tm.leases, lease_terms.c.failover)
                    .join(lease_terms, lease_terms.c.order_id == tm.leases.c.order_id)
                    .where(tm.leases.c.state == "active")
                )
            )
        served = _probe_served(rt, [r.id for r in live if parse_serve(r.workload or "")])
        for row in live:
            if row.id in served:
                ok, detail = served[row.id]
            else:
                with rt.reader.connect() as conn:
                    ok, detail = _probe_agent(conn, row.provider, now, settings.gateway_stale_s)
            with rt.engine.begin() as conn:
                since = record_probe(conn, row.order_id, row.id, now, ok, detail)
                if since is not None and row.failover and now - since >= settings.lease_failover_s:
                    market_leases.lose_lease(
                        conn, row.id, now, f"probes failed for {now - since:.0f} s", settings
                    )
                    rt.notify_work()
    with rt.engine.begin() as conn:
        settle_leases(conn, now, settings)
