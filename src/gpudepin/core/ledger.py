"""The double-entry ledger: money moves only by balanced transactions.

Every account is a string key (see the ``*_account`` helpers). ``WORLD`` stands for the
outside world: a deposit takes tokens from it and a withdrawal returns them, so the sum
over all accounts, ``WORLD`` included, is always zero and every other account stays at or
above zero. The operations below are pure: they read balances and return a
``Transaction``; an adapter (in-memory here, SQL in the coordinator) applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gpudepin.core.errors import InsufficientFunds, InvalidInput
from gpudepin.core.money import fee_of, format_amount

WORLD = "world"
FEES = "protocol:fees"
BURNED = "protocol:burned"


def available_account(owner: str) -> str:
    return f"available:{owner.lower()}"


def escrow_account(owner: str, ref: str) -> str:
    return f"escrow:{owner.lower()}:{ref}"


def earned_account(owner: str) -> str:
    return f"earned:{owner.lower()}"


@dataclass(frozen=True)
class Posting:
    """One leg of a transaction: ``amount`` is added to the balance of ``account``."""

    account: str
    amount: int


@dataclass(frozen=True)
class Transaction:
    kind: str
    postings: tuple[Posting, ...]
    ref: str = ""
    memo: str = ""

    def __post_init__(self) -> None:
        if sum(p.amount for p in self.postings) != 0:
            raise ValueError(f"unbalanced transaction {self.kind}: {self.postings}")


def _require(balances: Mapping[str, int], account: str, amount: int) -> None:
    have = balances.get(account, 0)
    if have < amount:
        raise InsufficientFunds(
            f"{account} holds {format_amount(have)}, needs {format_amount(amount)}"
        )


def _positive(amount: int, what: str) -> None:
    if amount <= 0:
        raise InvalidInput(f"{what} must be positive, got {amount}")


def deposit(owner: str, amount: int, ref: str = "") -> Transaction:
    """Tokens arrive from outside into the owner's available balance."""
    _positive(amount, "deposit")
    return Transaction(
        "deposit", (Posting(WORLD, -amount), Posting(available_account(owner), amount)), ref
    )


def withdraw(balances: Mapping[str, int], account: str, amount: int, ref: str = "") -> Transaction:
    """Tokens leave ``account`` (available or earned) for the outside world."""
    _positive(amount, "withdrawal")
    _require(balances, account, amount)
    return Transaction("withdraw", (Posting(account, -amount), Posting(WORLD, amount)), ref)


def lock_escrow(balances: Mapping[str, int], owner: str, ref: str, amount: int) -> Transaction:
    """Move a buyer's available tokens into the escrow of job or lease ``ref``."""
    _positive(amount, "escrow")
    src = available_account(owner)
    _require(balances, src, amount)
    return Transaction(
        "lock_escrow", (Posting(src, -amount), Posting(escrow_account(owner, ref), amount)), ref
    )


def pay_from_escrow(
    balances: Mapping[str, int],
    buyer: str,
    ref: str,
    provider: str,
    gross: int,
    fee_bps: int,
    memo: str = "",
) -> Transaction:
    """Pay ``provider`` for accepted work out of escrow ``ref``, less the protocol fee."""
    _positive(gross, "payment")
    src = escrow_account(buyer, ref)
    _require(balances, src, gross)
    fee = fee_of(gross, fee_bps)
    legs = [Posting(src, -gross), Posting(earned_account(provider), gross - fee)]
    if fee:
        legs.append(Posting(FEES, fee))
    return Transaction("pay", tuple(legs), ref, memo)


def refund_escrow(balances: Mapping[str, int], buyer: str, ref: str) -> Transaction | None:
    """Return what is left in escrow ``ref`` to the buyer; None when nothing is left."""
    rest = balances.get(escrow_account(buyer, ref), 0)
    if rest <= 0:
        return None
    return Transaction(
        "refund",
        (Posting(escrow_account(buyer, ref), -rest), Posting(available_account(buyer), rest)),
        ref,
    )


def burn_fees(balances: Mapping[str, int], amount: int | None = None) -> Transaction | None:
    """Mark collected protocol fees as burned (all of them unless ``amount`` is given)."""
    amt = balances.get(FEES, 0) if amount is None else amount
    if amt <= 0:
        return None
    _require(balances, FEES, amt)
    return Transaction("burn", (Posting(FEES, -amt), Posting(BURNED, amt)))


def imbalances(balances: Mapping[str, int]) -> list[str]:
    """Every way the books fail to balance; an empty list means they are sound."""
    problems = []
    total = sum(balances.values())
    if total != 0:
        problems.append(f"accounts sum to {total}, not 0")
    for account, amount in sorted(balances.items()):
        if account != WORLD and amount < 0:
            problems.append(f"{account} is negative: {amount}")
    return problems


@dataclass
class InMemoryLedger:
    """A ledger held in a dict: for unit tests and the simulator."""

    balances: dict[str, int] = field(default_factory=dict)
    journal: list[Transaction] = field(default_factory=list)

    def apply(self, txn: Transaction | None) -> None:
        if txn is None:
            return
        for p in txn.postings:
            if p.account != WORLD and self.balances.get(p.account, 0) + p.amount < 0:
                raise InsufficientFunds(f"{p.account} would go negative")
        for p in txn.postings:
            self.balances[p.account] = self.balances.get(p.account, 0) + p.amount
        self.journal.append(txn)

    def apply_all(self, txns: Iterable[Transaction | None]) -> None:
        for t in txns:
            self.apply(t)

    def balance(self, account: str) -> int:
        return self.balances.get(account, 0)


def stake_account(owner: str) -> str:
    return f"stake:{owner.lower()}"


def sla_credit_from_stake(
    balances: Mapping[str, int], provider: str, buyer: str, amount: int, ref: str = ""
) -> Transaction | None:
    """Pay a buyer's SLA credit out of the provider's stake, with no claim to file.

    The stake is the credit's only source, so a credit larger than the stake pays what the
    stake holds and the memo records the shortfall; None when the stake is empty.
    """
    _positive(amount, "SLA credit")
    src = stake_account(provider)
    paid = min(amount, balances.get(src, 0))
    if paid <= 0:
        return None
    memo = f"sla credit {paid}" if paid == amount else f"sla credit {paid} of {amount} owed"
    return Transaction(
        "sla_credit", (Posting(src, -paid), Posting(available_account(buyer), paid)), ref, memo
    )
