"""GPU leases billed per second of delivered time, from the provider's usage receipts.

A lease moves ``pending → active → closed | expired | overdrawn | provider_lost``; a
pending lease whose provider does not start it before its deadline becomes
``not_started`` and the order is auctioned again (``gpudepin.core.market.reaward``).

The escrow for the whole lease (maximum price times GPUs times duration) is locked under the
order's id when the order is made. The provider heartbeats signed receipts carrying the
CUMULATIVE seconds it delivered; ``accrue`` bills the seconds no earlier receipt billed,
capped by the time since the start, the duration and the escrow, so a replayed or older
receipt bills nothing and nothing is billed twice. Billing follows receipts: when they stop,
billing stops, and ``tick`` closes the lease as provider-lost after a grace period. What is
left in escrow goes back to the buyer when the lease ends (``refund``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from gpudepin.core.errors import Conflict, Forbidden, InvalidInput
from gpudepin.core.ledger import Transaction, pay_from_escrow, refund_escrow
from gpudepin.core.market import Award, Order, OrderKind

DEFAULT_FEE_BPS = 500
# a receipt is expected every few seconds; this long without one means the provider is gone
DEFAULT_GRACE_S = 90.0
DEFAULT_START_TIMEOUT_S = 300.0


class LeaseState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    CLOSED = "closed"
    EXPIRED = "expired"
    OVERDRAWN = "overdrawn"
    PROVIDER_LOST = "provider_lost"
    NOT_STARTED = "not_started"


LEASE_TRANSITIONS: dict[LeaseState, frozenset[LeaseState]] = {
    LeaseState.PENDING: frozenset({LeaseState.ACTIVE, LeaseState.NOT_STARTED, LeaseState.CLOSED}),
    LeaseState.ACTIVE: frozenset(
        {LeaseState.CLOSED, LeaseState.EXPIRED, LeaseState.OVERDRAWN, LeaseState.PROVIDER_LOST}
    ),
    LeaseState.CLOSED: frozenset(),
    LeaseState.EXPIRED: frozenset(),
    LeaseState.OVERDRAWN: frozenset(),
    LeaseState.PROVIDER_LOST: frozenset(),
    LeaseState.NOT_STARTED: frozenset(),
}

TERMINAL_LEASE_STATES = frozenset(s for s, nxt in LEASE_TRANSITIONS.items() if not nxt)


def lease_transition(current: LeaseState | str, target: LeaseState | str) -> LeaseState:
    """Return ``target`` if a lease may move there from ``current``; raise Conflict if not."""
    cur, tgt = LeaseState(current), LeaseState(target)
    if tgt not in LEASE_TRANSITIONS[cur]:
        raise Conflict(
            f"a lease cannot go from {cur} to {tgt}",
            hint="Look at the lease with `gpudepin lease show ID`.",
        )
    return tgt


@dataclass(frozen=True)
class Lease:
    """One provider's GPUs rented to a buyer; ``escrow_ref`` names the escrow account
    (the order's id, so a re-awarded lease draws on the same escrow)."""

    id: str
    escrow_ref: str
    buyer: str
    provider: str
    gpu_class: str
    gpus: int
    price: int  # per GPU-second, the winning bid
    duration_s: int
    escrow: int  # locked for this lease
    awarded_at: float
    start_deadline: float
    state: LeaseState = LeaseState.PENDING
    started_at: float | None = None
    billed_seconds: int = 0
    billed_amount: int = 0
    last_cumulative: int = 0
    last_receipt_at: float | None = None
    closed_at: float | None = None
    close_reason: str = ""
    # what runs on the lease (e.g. an inference endpoint's id); empty for bare GPU time
    workload: str = ""

    @property
    def rate(self) -> int:
        """Base units per second for all of the lease's GPUs."""
        return self.price * self.gpus

    @property
    def remaining_escrow(self) -> int:
        return self.escrow - self.billed_amount

    @property
    def ends_at(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.duration_s


@dataclass(frozen=True)
class UsageReceipt:
    lease_id: str
    provider: str
    cumulative_seconds: int
    at: float  # the provider's clock, signed for the record; billing uses the coordinator's
    signature: str = ""


@dataclass(frozen=True)
class Accrual:
    """What one receipt bills: ``seconds`` of delivered time, ``amount`` base units, and
    the lease as it stands afterwards (possibly closed as expired or overdrawn)."""

    seconds: int
    amount: int
    lease: Lease


def escrow_for(order: Order) -> int:
    """What a lease order locks when it is made: the maximum for the whole duration."""
    if order.kind is not OrderKind.LEASE:
        raise InvalidInput(f"order {order.id} is a {order.kind} order, not a lease")
    return order.max_price * order.quantity * order.duration_s


def new_lease(
    order: Order,
    award: Award,
    now: float,
    *,
    escrow: int | None = None,
    lease_id: str | None = None,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> Lease:
    """The pending lease an award creates; its provider must start it within
    ``start_timeout_s`` or lose it."""
    if order.kind is not OrderKind.LEASE or award.order_id != order.id:
        raise InvalidInput(f"award {award.order_id} does not award lease order {order.id}")
    if len(award.allocations) != 1:
        raise InvalidInput("a lease goes to exactly one provider")
    alloc = award.allocations[0]
    locked = escrow_for(order) if escrow is None else escrow
    if alloc.price * alloc.quantity * order.duration_s > locked:
        raise InvalidInput("the award costs more than the escrow holds")
    return Lease(
        id=lease_id or order.id,
        escrow_ref=order.id,
        buyer=order.buyer.lower(),
        provider=alloc.provider.lower(),
        gpu_class=alloc.gpu_class,
        gpus=alloc.quantity,
        price=alloc.price,
        duration_s=order.duration_s,
        escrow=locked,
        awarded_at=now,
        start_deadline=now + start_timeout_s,
    )


def receipt_message(receipt: UsageReceipt) -> str:
    """The canonical text a provider signs for a usage receipt (EIP-191 personal message)."""
    return (
        f"gpudepin usage\nlease: {receipt.lease_id}\nprovider: {receipt.provider.lower()}\n"
        f"cumulative_seconds: {receipt.cumulative_seconds}\nat: {receipt.at:.3f}"
    )


def start(lease: Lease, now: float) -> Lease:
    """The provider started the lease: billing time counts from ``now``."""
    lease_transition(lease.state, LeaseState.ACTIVE)
    if now > lease.start_deadline:
        raise Conflict(f"lease {lease.id} had to start by {lease.start_deadline:.1f}")
    return replace(lease, state=LeaseState.ACTIVE, started_at=now, last_receipt_at=now)


def _end(lease: Lease, state: LeaseState, now: float, reason: str) -> Lease:
    lease_transition(lease.state, state)
    return replace(lease, state=state, closed_at=now, close_reason=reason)


def accrue(lease: Lease, receipt: UsageReceipt, now: float) -> Accrual:
    """Bill the delivered seconds ``receipt`` adds; see the module docstring for the caps.
    Only a receipt that claims more than any before keeps the lease alive, so replaying an
    old heartbeat cannot hold a dead lease open."""
    if receipt.lease_id != lease.id:
        raise InvalidInput(f"receipt for lease {receipt.lease_id} applied to {lease.id}")
    if receipt.provider.lower() != lease.provider:
        raise Forbidden(f"lease {lease.id} belongs to another provider")
    if receipt.cumulative_seconds < 0:
        raise InvalidInput("cumulative_seconds must not be negative", field="cumulative_seconds")
    if lease.state is not LeaseState.ACTIVE or lease.started_at is None:
        return Accrual(0, 0, lease)
    elapsed = max(int(now - lease.started_at), 0)
    affordable = lease.escrow // lease.rate
    delivered = min(receipt.cumulative_seconds, elapsed, lease.duration_s, affordable)
    seconds = max(delivered - lease.billed_seconds, 0)
    amount = seconds * lease.rate
    fresh = receipt.cumulative_seconds > lease.last_cumulative
    after = replace(
        lease,
        billed_seconds=lease.billed_seconds + seconds,
        billed_amount=lease.billed_amount + amount,
        last_cumulative=max(lease.last_cumulative, receipt.cumulative_seconds),
        last_receipt_at=now if fresh else lease.last_receipt_at,
    )
    if after.billed_seconds >= after.duration_s:
        after = _end(after, LeaseState.EXPIRED, now, "ran its full duration")
    elif after.remaining_escrow < after.rate:
        after = _end(after, LeaseState.OVERDRAWN, now, "escrow spent")
    return Accrual(seconds, amount, after)


def tick(lease: Lease, now: float, grace_s: float = DEFAULT_GRACE_S) -> Lease:
    """Close what time alone closes: a pending lease past its start deadline, an active
    one without a fresh receipt for ``grace_s``, or one whose duration (plus the grace for
    the last receipt) is over. Returns ``lease`` unchanged otherwise."""
    if lease.state is LeaseState.PENDING and now > lease.start_deadline:
        return _end(lease, LeaseState.NOT_STARTED, now, "the provider did not start it in time")
    if lease.state is not LeaseState.ACTIVE or lease.started_at is None:
        return lease
    last = lease.last_receipt_at if lease.last_receipt_at is not None else lease.started_at
    if now - last > grace_s:
        return _end(
            lease, LeaseState.PROVIDER_LOST, now, f"no usage receipt for {now - last:.0f} s"
        )
    if now >= lease.started_at + lease.duration_s + grace_s:
        return _end(lease, LeaseState.EXPIRED, now, "ran its full duration")
    return lease


def lose(lease: Lease, now: float, reason: str) -> Lease:
    """The coordinator found the provider dead (its probes failed) before the grace ran
    out: the lease ends as provider-lost, billed up to its last receipt."""
    return _end(lease, LeaseState.PROVIDER_LOST, now, reason)


def close(lease: Lease, now: float, reason: str = "closed by the buyer") -> Lease:
    """End a lease early; ``refund`` then returns the unused escrow."""
    return _end(lease, LeaseState.CLOSED, now, reason)


def settle(
    balances: Mapping[str, int], lease: Lease, accrual: Accrual, fee_bps: int = DEFAULT_FEE_BPS
) -> Transaction | None:
    """The payment for ``accrual`` out of the lease's escrow, less the protocol fee."""
    if accrual.amount <= 0:
        return None
    return pay_from_escrow(
        balances,
        lease.buyer,
        lease.escrow_ref,
        lease.provider,
        accrual.amount,
        fee_bps,
        memo=f"lease {lease.id}: {accrual.seconds} s x {lease.gpus} {lease.gpu_class}",
    )


def refund(balances: Mapping[str, int], lease: Lease) -> Transaction | None:
    """Return what is left in the lease's escrow to the buyer once the lease has ended.
    A ``not_started`` lease keeps its escrow for the re-auction; refund it only when the
    order is given up."""
    if lease.state not in TERMINAL_LEASE_STATES:
        raise Conflict(f"lease {lease.id} is still {lease.state}; close it first")
    return refund_escrow(balances, lease.buyer, lease.escrow_ref)
