"""The foundation's pure rules: money, state machines, the ledger's books."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpudepin.core
from gpudepin.core import ledger
from gpudepin.core.errors import Conflict, InsufficientFunds, InvalidInput
from gpudepin.core.hardware import classify, gpu_class
from gpudepin.core.jobs import (
    JOB_TRANSITIONS,
    JobState,
    TaskState,
    after_lost_attempt,
    job_transition,
    task_transition,
)
from gpudepin.core.money import UNIT, format_amount, parse_amount


def test_core_imports_no_io_libraries() -> None:
    forbidden = {
        "sqlalchemy",
        "httpx",
        "fastapi",
        "web3",
        "subprocess",
        "asyncio",
        "numpy",
        "torch",
    }
    # put the purged modules back afterwards: later tests hold references to them, and a
    # second copy of sqlalchemy in one process breaks its event registry
    removed = {m: sys.modules.pop(m) for m in list(sys.modules) if m.split(".")[0] in forbidden}
    try:
        before = set(sys.modules)
        for info in pkgutil.iter_modules(gpudepin.core.__path__, "gpudepin.core."):
            importlib.import_module(info.name)
        pulled = {m.split(".")[0] for m in set(sys.modules) - before}
    finally:
        sys.modules.update(removed)
    assert not (pulled & forbidden), f"core imported {pulled & forbidden}"


def test_amounts_round_trip_in_base_units() -> None:
    assert parse_amount("1.5") == 3 * UNIT // 2
    assert format_amount(parse_amount("0.000001")) == "0.000001"
    assert format_amount(-2 * UNIT) == "-2"
    for bad in ("-1", "0", "abc", "nan", "1e-30"):
        with pytest.raises(InvalidInput):
            parse_amount(bad)


def test_hardware_catalog_is_honest_about_cpu() -> None:
    assert classify("NVIDIA GeForce RTX 4090") == "rtx4090"
    assert classify("NVIDIA H100 80GB HBM3") == "h100-80g"
    assert classify("Intel Xeon") == "cpu"
    with pytest.raises(InvalidInput, match="unknown GPU class"):
        gpu_class("rtx9999")


def test_job_moves_only_along_written_transitions() -> None:
    assert job_transition("submitted", "funded") is JobState.FUNDED
    for terminal in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
        assert not JOB_TRANSITIONS[terminal]
        with pytest.raises(Conflict):
            job_transition(terminal, JobState.RUNNING)
    with pytest.raises(Conflict):
        job_transition("submitted", "completed")


def test_task_expiry_requeues_and_attempts_are_bounded() -> None:
    assert task_transition("assigned", "pending") is TaskState.PENDING
    with pytest.raises(Conflict):
        task_transition("accepted", "pending")
    assert after_lost_attempt(1, 3, "frame 1", "silent").state is TaskState.PENDING
    final = after_lost_attempt(3, 3, "frame 1", "silent")
    assert final.state is TaskState.CANCELLED
    assert final.fail_job_reason and "frame 1 failed 3 times" in final.fail_job_reason


def test_payment_takes_the_fee_and_refund_returns_the_rest() -> None:
    book = ledger.InMemoryLedger()
    book.apply(ledger.deposit("0xB", 10 * UNIT))
    book.apply(ledger.lock_escrow(book.balances, "0xb", "j1", 4 * UNIT))
    book.apply(ledger.pay_from_escrow(book.balances, "0xb", "j1", "0xp", UNIT, 500))
    assert book.balance(ledger.earned_account("0xp")) == UNIT * 95 // 100
    assert book.balance(ledger.FEES) == UNIT * 5 // 100
    book.apply(ledger.refund_escrow(book.balances, "0xb", "j1"))
    assert book.balance(ledger.available_account("0xb")) == 9 * UNIT
    assert ledger.imbalances(book.balances) == []
    with pytest.raises(InsufficientFunds):
        ledger.lock_escrow(book.balances, "0xb", "j2", 100 * UNIT)


buyers = st.sampled_from(["0xa", "0xb"])
providers = st.sampled_from(["0xp", "0xq"])
amounts = st.integers(min_value=1, max_value=50 * UNIT)
ops = st.one_of(
    st.tuples(st.just("deposit"), buyers, amounts),
    st.tuples(st.just("lock"), buyers, amounts, st.sampled_from(["j1", "j2"])),
    st.tuples(
        st.just("pay"),
        buyers,
        amounts,
        st.sampled_from(["j1", "j2"]),
        providers,
        st.integers(0, 10_000),
    ),
    st.tuples(st.just("refund"), buyers, st.sampled_from(["j1", "j2"])),
    st.tuples(st.just("withdraw"), st.sampled_from(["available:0xa", "earned:0xp"]), amounts),
    st.tuples(st.just("burn")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
def test_any_sequence_of_operations_keeps_the_books_balanced(sequence: list[tuple]) -> None:
    book = ledger.InMemoryLedger()
    deposited = withdrawn = 0
    for op in sequence:
        kind, *args = op
        try:
            if kind == "deposit":
                txn = ledger.deposit(args[0], args[1])
                deposited += args[1]
            elif kind == "lock":
                txn = ledger.lock_escrow(book.balances, args[0], args[2], args[1])
            elif kind == "pay":
                txn = ledger.pay_from_escrow(
                    book.balances, args[0], args[2], args[3], args[1], args[4]
                )
            elif kind == "refund":
                txn = ledger.refund_escrow(book.balances, args[0], args[1])
            elif kind == "withdraw":
                txn = ledger.withdraw(book.balances, args[0], args[1])
                withdrawn += args[1]
            else:
                txn = ledger.burn_fees(book.balances)
        except InsufficientFunds:
            continue  # refused: nothing moved
        book.apply(txn)
        assert ledger.imbalances(book.balances) == []
    outside = sum(v for k, v in book.balances.items() if k != ledger.WORLD)
    assert outside == deposited - withdrawn
    assert all(v >= 0 for k, v in book.balances.items() if k != ledger.WORLD)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=1, max_value=3 * UNIT), min_size=1, max_size=40),
    st.integers(0, 10_000),
)
def test_a_batch_paid_at_once_moves_what_paying_one_by_one_moves(
    grosses: list[int], fee_bps: int
) -> None:
    def book() -> ledger.InMemoryLedger:
        b = ledger.InMemoryLedger()
        b.apply(ledger.deposit("0xb", 200 * UNIT))
        b.apply(ledger.lock_escrow(b.balances, "0xb", "j1", 150 * UNIT))
        return b

    one_by_one, at_once = book(), book()
    for gross in grosses:
        one_by_one.apply(
            ledger.pay_into_hold(one_by_one.balances, "0xb", "j1", "0xp", gross, fee_bps)
        )
    txn = ledger.pay_many_into_hold(at_once.balances, "0xb", "j1", "0xp", grosses, fee_bps)
    at_once.apply(txn)
    assert at_once.balances == one_by_one.balances  # fees rounded per payment, as one by one
    assert len(txn.postings) <= 3 and ledger.imbalances(at_once.balances) == []


def test_a_batch_the_escrow_cannot_cover_moves_nothing() -> None:
    b = ledger.InMemoryLedger()
    b.apply(ledger.deposit("0xb", 10 * UNIT))
    b.apply(ledger.lock_escrow(b.balances, "0xb", "j1", 2 * UNIT))
    with pytest.raises(InsufficientFunds):
        ledger.pay_many_into_hold(b.balances, "0xb", "j1", "0xp", [UNIT, UNIT, 1], 500)
    with pytest.raises(InvalidInput):
        ledger.pay_many_into_hold(b.balances, "0xb", "j1", "0xp", [], 500)
