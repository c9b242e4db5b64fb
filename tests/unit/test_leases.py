"""Per-second lease billing: only delivered time is paid, and the books always balance."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.core.errors import Conflict, Forbidden
from gpudepin.core.leases import (
    DEFAULT_GRACE_S,
    TERMINAL_LEASE_STATES,
    Lease,
    LeaseState,
    UsageReceipt,
    accrue,
    close,
    escrow_for,
    lease_transition,
    new_lease,
    refund,
    settle,
    start,
    tick,
)
from gpudepin.core.ledger import (
    FEES,
    InMemoryLedger,
    available_account,
    deposit,
    earned_account,
    escrow_account,
    imbalances,
    lock_escrow,
)
from gpudepin.core.market import (
    Allocation,
    Award,
    Order,
    OrderKind,
    Requirements,
    validate_order,
)
from gpudepin.core.money import UNIT

BUYER, PROVIDER = "0xbuyer", "0xprov"
PRICE = UNIT // 3600  # 1 token per GPU-hour


def setup(
    duration_s: int = 600, gpus: int = 1, max_price: int = 2 * PRICE
) -> tuple[Lease, InMemoryLedger]:
    order = validate_order(
        Order("L9", OrderKind.LEASE, BUYER, Requirements(), max_price, gpus, 0.0, duration_s)
    )
    book = InMemoryLedger()
    book.apply(deposit(BUYER, escrow_for(order) + UNIT))
    book.apply(lock_escrow(book.balances, BUYER, order.id, escrow_for(order)))
    award = Award(
        order.id,
        OrderKind.LEASE,
        (Allocation(PROVIDER, gpus, PRICE, "rtx4090", "eu-west"),),
        PRICE,
        0.0,
        duration_s=duration_s,
    )
    return new_lease(order, award, now=0.0), book


def receipt(cumulative: int) -> UsageReceipt:
    return UsageReceipt("L9", PROVIDER, cumulative, at=0.0)


def bill(lease: Lease, book: InMemoryLedger, cumulative: int, now: float) -> Lease:
    accrual = accrue(lease, receipt(cumulative), now)
    book.apply(settle(book.balances, lease, accrual))
    return accrual.lease


def test_provider_is_paid_per_delivered_second_less_the_fee_and_the_rest_refunded() -> None:
    lease, book = setup(duration_s=600)
    lease = start(lease, now=10.0)
    lease = bill(lease, book, 60, now=70.0)
    lease = bill(lease, book, 120, now=130.0)
    assert lease.billed_seconds == 120
    lease = close(lease, now=131.0)
    book.apply(refund(book.balances, lease))
    gross = 120 * PRICE
    assert book.balance(earned_account(PROVIDER)) == gross - gross * 500 // 10_000
    assert book.balance(FEES) == gross * 500 // 10_000
    assert book.balance(escrow_account(BUYER, "L9")) == 0
    assert book.balance(available_account(BUYER)) == UNIT + 600 * 2 * PRICE - gross
    assert imbalances(book.balances) == []


def test_replayed_or_older_receipts_bill_nothing_and_do_not_keep_the_lease_alive() -> None:
    lease, book = setup()
    lease = bill(start(lease, now=0.0), book, 30, now=30.0)
    for now in (40.0, 80.0, 110.0):
        accrual = accrue(lease, receipt(30), now)
        assert (accrual.seconds, accrual.amount) == (0, 0)
        assert accrue(lease, receipt(10), now).amount == 0
        lease = accrual.lease
    lost = tick(lease, now=30.0 + DEFAULT_GRACE_S + 1)
    assert lost.state is LeaseState.PROVIDER_LOST


def test_claims_beyond_the_elapsed_time_are_capped_then_billed_when_earned() -> None:
    lease, _ = setup()
    lease = start(lease, now=100.0)
    accrual = accrue(lease, receipt(500), now=160.0)
    assert accrual.seconds == 60, "never beyond now - start"
    accrual = accrue(accrual.lease, receipt(500), now=200.0)
    assert accrual.seconds == 40


def test_billing_stops_when_receipts_stop() -> None:
    lease, book = setup(duration_s=3600)
    lease = bill(start(lease, now=0.0), book, 100, now=100.0)
    lease = tick(lease, now=100.0 + DEFAULT_GRACE_S + 5)
    assert lease.state is LeaseState.PROVIDER_LOST
    # a receipt arriving later, claiming the silent time, bills nothing
    assert accrue(lease, receipt(3000), now=3000.0).amount == 0
    book.apply(refund(book.balances, lease))
    assert book.balance(earned_account(PROVIDER)) == 100 * PRICE * 95 // 100


def test_lease_expires_after_its_duration_and_never_bills_more() -> None:
    lease, book = setup(duration_s=60)
    lease = start(lease, now=0.0)
    lease = bill(lease, book, 90, now=90.0)
    assert lease.state is LeaseState.EXPIRED and lease.billed_seconds == 60
    quiet, _ = setup(duration_s=60)
    quiet = start(quiet, now=0.0)
    assert tick(quiet, now=30.0).state is LeaseState.ACTIVE
    expired = tick(replace(quiet, last_receipt_at=60.0 + DEFAULT_GRACE_S), 60.0 + DEFAULT_GRACE_S)
    assert expired.state is LeaseState.EXPIRED


def test_lease_is_closed_as_overdrawn_when_the_escrow_runs_out() -> None:
    lease, book = setup(duration_s=600)
    lease = replace(lease, escrow=100 * PRICE)
    lease = bill(start(lease, now=0.0), book, 150, now=150.0)
    assert lease.state is LeaseState.OVERDRAWN and lease.billed_amount == 100 * PRICE


def test_winner_that_never_starts_loses_the_lease() -> None:
    lease, _ = setup()
    assert tick(lease, now=lease.start_deadline - 1).state is LeaseState.PENDING
    assert tick(lease, now=lease.start_deadline + 1).state is LeaseState.NOT_STARTED
    with pytest.raises(Conflict, match="had to start"):
        start(lease, now=lease.start_deadline + 1)


def test_only_the_leasing_provider_may_bill_and_closed_leases_stay_closed() -> None:
    lease, _ = setup()
    lease = start(lease, now=0.0)
    with pytest.raises(Forbidden):
        accrue(lease, replace(receipt(10), provider="0xother"), now=10.0)
    closed = close(lease, now=5.0)
    with pytest.raises(Conflict):
        close(closed, now=6.0)
    with pytest.raises(Conflict):
        lease_transition("expired", "active")
    with pytest.raises(Conflict, match="close it first"):
        refund({}, lease)


actions = st.lists(
    st.one_of(
        st.tuples(st.just("receipt"), st.floats(0, 120), st.integers(-20, 150)),
        st.tuples(st.just("tick"), st.floats(0, 200), st.just(0)),
        st.tuples(st.just("close"), st.floats(0, 50), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    steps=actions,
    duration=st.integers(1, 900),
    gpus=st.integers(1, 4),
    short_escrow=st.booleans(),
)
def test_ledger_balances_through_any_sequence_of_receipts_and_closes(
    steps: list[tuple[str, float, int]], duration: int, gpus: int, short_escrow: bool
) -> None:
    lease, book = setup(duration_s=duration, gpus=gpus)
    if short_escrow:
        lease = replace(lease, escrow=lease.escrow // 7)
    locked = book.balance(escrow_account(BUYER, "L9"))
    now, claimed, most_claimed = 0.0, 0, 0
    lease = start(lease, now=0.0)
    for kind, dt, delta in steps:
        now += dt
        if kind == "receipt":
            # a negative step replays an older receipt
            claimed = max(claimed + delta, 0)
            most_claimed = max(most_claimed, claimed)
            before = lease
            lease = bill(lease, book, claimed, now)
            billed_now = lease.billed_seconds - before.billed_seconds
            if before.state in TERMINAL_LEASE_STATES:
                assert billed_now == 0, "billed a closed lease"
        elif kind == "tick":
            lease = tick(lease, now)
        elif lease.state not in TERMINAL_LEASE_STATES:
            lease = close(lease, now)
        assert imbalances(book.balances) == []
        assert lease.billed_seconds <= min(duration, int(now), most_claimed)
        assert lease.billed_amount == lease.billed_seconds * PRICE * gpus
        assert lease.billed_amount <= lease.escrow
        assert book.balance(escrow_account(BUYER, "L9")) == locked - lease.billed_amount
    if lease.state not in TERMINAL_LEASE_STATES:
        lease = close(lease, now)
    book.apply(refund(book.balances, lease))
    paid = book.balance(earned_account(PROVIDER)) + book.balance(FEES)
    assert paid == lease.billed_amount
    assert book.balance(escrow_account(BUYER, "L9")) == 0
    assert book.balance(available_account(BUYER)) + paid == locked + UNIT
    assert imbalances(book.balances) == []
