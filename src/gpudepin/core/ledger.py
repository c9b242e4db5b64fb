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


def net_change(txns: Iterable[Transaction]) -> dict[str, int]:
    """What ``txns`` together add to each account they touch."""
    change: dict[str, int] = {}
    for txn in txns:
        for p in txn.postings:
            change[p.account] = change.get(p.account, 0) + p.amount
    return change


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

    The credit comes from the bonded stake first, then from stake still unbonding (which
    stays answerable, so unbonding cannot dodge a breach). A credit larger than both pays
    what they hold and the memo records the shortfall; None when both are empty.
    """
    _positive(amount, "SLA credit")
    legs: list[Posting] = []
    paid = 0
    for src in (stake_account(provider), unbonding_account(provider)):
        take = min(amount - paid, balances.get(src, 0))
        if take > 0:
            legs.append(Posting(src, -take))
            paid += take
    if paid <= 0:
        return None
    legs.append(Posting(available_account(buyer), paid))
    memo = f"sla credit {paid}" if paid == amount else f"sla credit {paid} of {amount} owed"
    return Transaction("sla_credit", tuple(legs), ref, memo)


# --- trust layer: stake, hold-back, slashing, auditor pay --------------------------
# Stake and held earnings are accounts like any other, so the books stay balanced
# through every slash; the policy that decides amounts lives in core.verification.
# ``stake_account`` above (shared with SLA credits) names the bonded stake.


def unbonding_account(owner: str) -> str:
    return f"unbonding:{owner.lower()}"


def held_account(owner: str) -> str:
    """Earnings still inside their challenge window: a late-proven fault claws them back."""
    return f"held:{owner.lower()}"


def _move(
    balances: Mapping[str, int], kind: str, src: str, dst: str, amount: int, ref: str = ""
) -> Transaction:
    _positive(amount, kind)
    _require(balances, src, amount)
    return Transaction(kind, (Posting(src, -amount), Posting(dst, amount)), ref)


def stake(balances: Mapping[str, int], owner: str, amount: int) -> Transaction:
    """Bond ``amount`` of the owner's available tokens as stake."""
    return _move(balances, "stake", available_account(owner), stake_account(owner), amount)


def unbond(balances: Mapping[str, int], owner: str, amount: int) -> Transaction:
    """Start unbonding: the tokens leave the stake but stay slashable until released."""
    return _move(balances, "unbond", stake_account(owner), unbonding_account(owner), amount)


def release_stake(balances: Mapping[str, int], owner: str, amount: int) -> Transaction:
    """Return unbonded stake to the owner's available balance (after the delay has passed:
    ``core.verification.may_release_stake`` decides when)."""
    return _move(
        balances, "release_stake", unbonding_account(owner), available_account(owner), amount
    )


def pay_into_hold(
    balances: Mapping[str, int],
    buyer: str,
    ref: str,
    provider: str,
    gross: int,
    fee_bps: int,
    memo: str = "",
) -> Transaction:
    """Like ``pay_from_escrow``, but the provider's part lands in its held account."""
    return pay_many_into_hold(balances, buyer, ref, provider, [gross], fee_bps, memo)


def pay_many_into_hold(
    balances: Mapping[str, int],
    buyer: str,
    ref: str,
    provider: str,
    grosses: Iterable[int],
    fee_bps: int,
    memo: str = "",
) -> Transaction:
    """Several payments from one escrow into one provider's hold, as one transaction.

    Each payment's fee is taken on its own, exactly as paying them one by one would, and
    the legs are summed per account: a batch of results costs three postings, not three
    per result.
    """
    amounts = list(grosses)
    if not amounts:
        raise InvalidInput("a payment needs at least one amount")
    for gross in amounts:
        _positive(gross, "payment")
    src = escrow_account(buyer, ref)
    total = sum(amounts)
    _require(balances, src, total)
    fee = sum(fee_of(gross, fee_bps) for gross in amounts)
    legs = [Posting(src, -total), Posting(held_account(provider), total - fee)]
    if fee:
        legs.append(Posting(FEES, fee))
    return Transaction("pay_held", tuple(legs), ref, memo)


def hold(balances: Mapping[str, int], provider: str, amount: int, ref: str = "") -> Transaction:
    """Lock already earned tokens back into the hold (e.g. while a dispute is open)."""
    return _move(balances, "hold", earned_account(provider), held_account(provider), amount, ref)


def release_held(
    balances: Mapping[str, int], provider: str, amount: int, ref: str = ""
) -> Transaction:
    """Earnings whose challenge window passed become withdrawable."""
    return _move(
        balances, "release_held", held_account(provider), earned_account(provider), amount, ref
    )


def claw_back(
    balances: Mapping[str, int], provider: str, buyer: str, amount: int, ref: str = ""
) -> Transaction:
    """Refund a buyer, out of the provider's held earnings, for work proven wrong."""
    return _move(
        balances, "claw_back", held_account(provider), available_account(buyer), amount, ref
    )


def slash(
    balances: Mapping[str, int],
    provider: str,
    amount: int,
    buyer: str,
    auditor: str,
    split: tuple[int, int, int],
    ref: str = "",
) -> Transaction:
    """Take ``amount`` from the provider's stake (then from its unbonding stake) and share
    it as ``split = (to_buyer, to_auditor, burned)`` (``core.verification.slash_split``)."""
    _positive(amount, "slash")
    if sum(split) != amount or min(split) < 0:
        raise InvalidInput(f"slash split {split} does not add up to {amount}")
    bonded = balances.get(stake_account(provider), 0)
    from_stake = min(bonded, amount)
    from_unbonding = amount - from_stake
    _require(balances, unbonding_account(provider), from_unbonding)
    to_buyer, to_auditor, burned = split
    legs = [
        Posting(stake_account(provider), -from_stake),
        Posting(unbonding_account(provider), -from_unbonding),
        Posting(available_account(buyer), to_buyer),
        Posting(earned_account(auditor), to_auditor),
        Posting(BURNED, burned),
    ]
    return Transaction("slash", tuple(p for p in legs if p.amount), ref)


def pay_auditor_from_fees(
    balances: Mapping[str, int], auditor: str, amount: int, ref: str = ""
) -> Transaction:
    """Pay an auditor for an audit out of the collected protocol fees."""
    return _move(balances, "audit_pay", FEES, earned_account(auditor), amount, ref)


# --- on-chain settlement: what an epoch root owes and what claims paid ---------------
# Tokens owed on chain sit in ``claimable:X`` from the moment they are promised (an epoch
# moves earnings there; a withdrawal request moves available tokens there) until the
# vault's Claimed event shows they left, when they go to WORLD. The vault backs every
# account but WORLD and BURNED, so reconciliation compares it with their sum.


def claimable_account(owner: str) -> str:
    return f"claimable:{owner.lower()}"


def make_claimable(
    balances: Mapping[str, int], owner: str, source: str, amount: int, ref: str = ""
) -> Transaction:
    """Promise ``amount`` of ``source`` (the owner's earned or available account) on chain."""
    if source not in (earned_account(owner), available_account(owner)):
        raise InvalidInput(f"{source} cannot become claimable by {owner}")
    return _move(balances, "make_claimable", source, claimable_account(owner), amount, ref)


def pay_claim(balances: Mapping[str, int], owner: str, amount: int, ref: str = "") -> Transaction:
    """A claim paid on chain: the tokens leave the network's books for the outside world."""
    _positive(amount, "claim")
    _require(balances, claimable_account(owner), amount)
    return Transaction(
        "claim", (Posting(claimable_account(owner), -amount), Posting(WORLD, amount)), ref
    )


def mint_rewards(rewards: Mapping[str, int], ref: str = "") -> Transaction | None:
    """Emit new tokens to providers' earned balances (a burn-and-mint emission epoch):
    they come from ``WORLD`` like a deposit, one posting per provider; None if all are 0."""
    legs = [Posting(earned_account(p), amt) for p, amt in rewards.items() if amt > 0]
    if any(amt < 0 for amt in rewards.values()):
        raise InvalidInput("a reward cannot be negative")
    if not legs:
        return None
    total = sum(p.amount for p in legs)
    return Transaction("mint", (Posting(WORLD, -total), *legs), ref)


def reverse_held_payment(
    balances: Mapping[str, int],
    provider: str,
    to_account: str,
    net: int,
    fee: int,
    ref: str = "",
) -> Transaction:
    """Undo a held task payment proven wrong: the provider's held pay and the protocol fee
    go back to ``to_account`` (the job's escrow while the task is redone, else the buyer's
    available balance), so the buyer never pays for rejected work."""
    _positive(net + fee, "reversal")
    _require(balances, held_account(provider), net)
    _require(balances, FEES, fee)
    legs = [
        Posting(held_account(provider), -net),
        Posting(FEES, -fee),
        Posting(to_account, net + fee),
    ]
    return Transaction("reverse_payment", tuple(p for p in legs if p.amount), ref)


def pay_speculation_from_fees(
    balances: Mapping[str, int], provider: str, amount: int, ref: str = ""
) -> Transaction:
    """Pay a cancelled speculative copy for the time it ran, out of the protocol fees
    (the network chose to speculate; the buyer pays the winner only, see core.hedging)."""
    return _move(balances, "speculation_pay", FEES, earned_account(provider), amount, ref)


def epoch_claimable(
    balances: Mapping[str, int], owners: Iterable[str], ref: str = ""
) -> Transaction | None:
    """One epoch's move of every owner's whole earned balance into its claimable account,
    as a single transaction (thousands of payees); None when nobody earned anything."""
    legs: list[Posting] = []
    for owner in sorted({o.lower() for o in owners}):
        amount = balances.get(earned_account(owner), 0)
        if amount > 0:
            legs += [
                Posting(earned_account(owner), -amount),
                Posting(claimable_account(owner), amount),
            ]
    if not legs:
        return None
    return Transaction("make_claimable", tuple(legs), ref)
