"""The SQL ledger adapter: payments posted without a prior lock still never overdraw,
never lose an update under concurrency, and always balance against the journal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, func, select

from gpudepin.coordinator import db, store
from gpudepin.core import ledger
from gpudepin.core.errors import InsufficientFunds

BUYER = "0x" + "b" * 40
JOB = "j1"


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    url = (
        request.getfixturevalue("pg_url")
        if request.param == "postgres"
        else f"sqlite:///{tmp_path / 'ledger.db'}"
    )
    eng = db.make_engine(url)
    db.migrate(eng)
    yield eng
    eng.dispose()


def _fund_escrow(eng: Engine, amount: int) -> None:
    with eng.begin() as conn:
        store.apply(conn, ledger.deposit(BUYER, amount), 0.0)
        locked = store.lock_balances(conn, [ledger.available_account(BUYER)])
        store.apply(conn, ledger.lock_escrow(locked, BUYER, JOB, amount), 0.0)


def _pay(eng: Engine, provider: str, gross: int, last: bool = False) -> None:
    """One payment from the escrow; with ``last`` it is the transaction's last write and
    goes out with the commit (as a result batch's payment does)."""

    def work(conn: Connection) -> None:
        seen = store.balances_for(conn, [ledger.escrow_account(BUYER, JOB)])
        txn = ledger.pay_many_into_hold(seen, BUYER, JOB, provider, [gross], fee_bps=1000)
        store.post(conn, [txn], 1.0, last=last)

    db.transaction(eng, work)


def _journal_sums(eng: Engine) -> dict[str, int]:
    with eng.connect() as conn:
        rows = conn.execute(select(db.ledger_entries.c.account, db.ledger_entries.c.amount))
        sums: dict[str, int] = {}
        for account, amount in rows:
            sums[account] = sums.get(account, 0) + int(amount)
        return sums


@pytest.mark.parametrize("last", [False, True], ids=["then-more", "last-write"])
def test_concurrent_payments_from_one_escrow_never_overdraw_or_lose_an_update(
    engine: Engine, last: bool
) -> None:
    # twelve providers race for an escrow that pays ten: each read sees enough, so only
    # the write can refuse the last two
    _fund_escrow(engine, 10 * 1000)
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            _pay(engine, "0x" + f"{i:040x}", 1000, last)
            outcomes.append("paid")
        except InsufficientFunds:
            outcomes.append("refused")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["paid"] * 10 + ["refused"] * 2
    with engine.connect() as conn:
        balances = store.all_balances(conn)
        entries = conn.execute(select(func.count()).select_from(db.ledger_entries)).scalar()
    assert balances[ledger.escrow_account(BUYER, JOB)] == 0
    assert balances[ledger.FEES] == 10 * 100
    # every balance is what its journal says, and the journal sums to zero
    journal = _journal_sums(engine)
    assert {a: v for a, v in balances.items() if v or a in journal} == journal
    assert sum(journal.values()) == 0
    assert entries == 2 + 2 + 10 * 3  # deposit, escrow, and three legs a payment


def test_a_refused_payment_leaves_no_journal_row_and_no_balance(engine: Engine) -> None:
    _fund_escrow(engine, 500)
    with pytest.raises(InsufficientFunds), engine.begin() as conn:
        # a stale read: the escrow looked richer than it is when the payment was built
        txn = ledger.pay_many_into_hold(
            {ledger.escrow_account(BUYER, JOB): 10_000}, BUYER, JOB, "0x" + "c" * 40, [900], 0
        )
        store.post(conn, [txn], 1.0)
    with engine.connect() as conn:
        balances = store.all_balances(conn)
    assert balances[ledger.escrow_account(BUYER, JOB)] == 500
    assert ledger.held_account("0x" + "c" * 40) not in balances
    assert sum(_journal_sums(engine).values()) == 0
    assert len(_journal_sums(engine)) == 3  # world, available, escrow: nothing else


def test_a_payment_refused_at_its_commit_leaves_the_connection_fit_for_the_next(
    engine: Engine,
) -> None:
    # the escrow pays one of these two: the second, sent with its commit, is refused by
    # the database and the pooled connection goes on serving the third
    _fund_escrow(engine, 1000)
    _pay(engine, "0x" + "d" * 40, 600, last=True)
    with pytest.raises(InsufficientFunds):
        _pay(engine, "0x" + "e" * 40, 600, last=True)
    _pay(engine, "0x" + "f" * 40, 400, last=True)
    with engine.connect() as conn:
        balances = store.all_balances(conn)
    assert balances[ledger.escrow_account(BUYER, JOB)] == 0
    assert ledger.held_account("0x" + "e" * 40) not in balances
    assert balances[ledger.FEES] == 60 + 40
    journal = _journal_sums(engine)
    assert {a: v for a, v in balances.items() if v or a in journal} == journal
