"""Ledger moves of on-chain settlement: promised on chain, paid by claims, always balanced."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core import ledger
from gpudepin.core.errors import InsufficientFunds, InvalidInput

OWNERS = [f"0x{i:040x}" for i in range(1, 6)]


@given(
    earnings=st.dictionaries(st.sampled_from(OWNERS), st.integers(0, 10**24), max_size=5),
    claims=st.lists(st.tuples(st.sampled_from(OWNERS), st.integers(1, 10**24)), max_size=8),
)
def test_epochs_and_claims_keep_the_books_balanced_and_never_pay_more_than_promised(
    earnings: dict[str, int], claims: list[tuple[str, int]]
) -> None:
    books = ledger.InMemoryLedger()
    books.apply(ledger.deposit("0xbuyer", sum(earnings.values()) + 1))
    for owner, amount in earnings.items():
        if amount:
            books.apply(ledger.lock_escrow(books.balances, "0xbuyer", owner, amount))
            books.apply(ledger.pay_from_escrow(books.balances, "0xbuyer", owner, owner, amount, 0))
    books.apply(ledger.epoch_claimable(books.balances, OWNERS, ref="epoch-1"))
    for owner in OWNERS:
        assert books.balance(ledger.earned_account(owner)) == 0
        assert books.balance(ledger.claimable_account(owner)) == earnings.get(owner, 0)
    for owner, amount in claims:
        owed = books.balance(ledger.claimable_account(owner))
        if amount > owed:
            with pytest.raises(InsufficientFunds):
                ledger.pay_claim(books.balances, owner, amount)
        else:
            books.apply(ledger.pay_claim(books.balances, owner, amount))
    assert ledger.imbalances(books.balances) == []


def test_only_an_owners_own_earned_or_available_tokens_become_claimable() -> None:
    books = {ledger.earned_account("0xa"): 5, ledger.available_account("0xb"): 5}
    with pytest.raises(InvalidInput):
        ledger.make_claimable(books, "0xa", ledger.available_account("0xb"), 5)
    txn = ledger.make_claimable(books, "0xa", ledger.earned_account("0xa"), 5)
    assert {p.account: p.amount for p in txn.postings} == {
        "earned:0xa": -5,
        "claimable:0xa": 5,
    }
    assert ledger.epoch_claimable({}, ["0xa"]) is None
