"""Verification policy: who gets audited, by whom, what a fault costs, and whom to trust.

Every rule here is pure (time as ``now``, randomness as ``rng``) so that the coordinator
and the simulator apply the same policy.

The audit rate
--------------
A task result is *audited* (re-executed by another provider) with probability ``p``.
A provider that cheats on a share ``f`` of its tasks, against a check that catches a cheat
with probability ``q`` (1.0 for a full re-execution, less for a tile or sample audit), is
caught within ``n`` tasks with probability (``shared/data/market-facts.md``)::

    P(caught within n) = 1 - (1 - p*q*f)^n                       detection_probability()

Cheating on one task saves at most ``saving`` (the compute it skipped, at most the task's
``reward``); when caught it forfeits the reward and is slashed up to its ``stake``. Cheating
does not pay when ``saving <= p*q*(reward + stake)``, so the rate that deters is::

    p_deter = saving / (q * (reward + stake))                    min_audit_rate()

With the worst case ``saving = reward`` and a full re-execution (``q = 1``), a stake of
19 task rewards makes the 5 % floor deterrent; a bigger task needs a bigger stake
(``min_stake_for_bid``), and an unstaked provider is audited on every task.

Deterrence alone lets a cheater run a long time before it is caught (at ``p = 0.05`` and
``f = 0.1`` the expected wait is ``1/(p*q*f) = 200`` tasks), so the rate also follows the
provider's record. With ``s`` = tasks verified since its last fault::

    p(s) = 1                                          while s < probation_tasks
    p(s) = exp(-(s - probation_tasks) / decay_tasks)  afterwards
    audit_rate = max(floor, p_deter, p(s))

A fault sets ``s`` back to 0, so the rate jumps back to 1. With the defaults
(probation 50, decay 20), a provider that cheats on 10 % of its tasks from its first task
escapes its first 100 tasks with probability below 0.1 % (``escape_probability``), while
an honest provider with 2,000 tasks behind it has had ~8 % of them audited.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from gpudepin.core.errors import InvalidInput
from gpudepin.core.money import UNIT

BPS = 10_000


@dataclass(frozen=True)
class VerificationParams:
    """Every knob of the trust layer, with the defaults the benchmark was tuned on."""

    floor: float = 0.05
    probation_tasks: int = 50
    decay_tasks: float = 20.0
    catch_rate: float = 1.0  # q of a full re-execution
    saving_ratio: float = 1.0  # share of a reward a cheater saves (worst case: all of it)
    hold_window_s: float = 7 * 86_400.0
    slash_bps: int = 1_000  # share of the stake a proven fault costs
    slash_buyer_bps: int = 5_000
    slash_auditor_bps: int = 2_000  # the rest of a slash is burned
    enterprise_min_stake: int = 1_000 * UNIT
    unstaked_bid_limit: int = UNIT  # bids per task above this need stake
    unbonding_s: float = 14 * 86_400.0  # io.net's 14-day unbonding
    ban_after_faults: int = 3
    auditor_ban_after: int = 2  # missed known answers before an auditor is dropped
    known_answer_rate: float = 0.02
    reputation_prior_tasks: float = 10.0
    reputation_fault_weight: float = 50.0

    def __post_init__(self) -> None:
        for name in ("floor", "catch_rate", "saving_ratio", "known_answer_rate"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0 and not (name == "known_answer_rate" and value == 0):
                raise InvalidInput(f"{name} must lie in (0, 1], got {value}")
        if self.slash_buyer_bps + self.slash_auditor_bps > BPS:
            raise InvalidInput("slash shares for buyer and auditor exceed 100 %")


DEFAULT_PARAMS = VerificationParams()


@dataclass(frozen=True)
class ProviderRecord:
    """What the network knows of a provider's past: the input of audit rate and reputation."""

    address: str
    operator: str
    region: str = ""
    device_class: str = "cpu"
    verified: int = 0  # audited tasks that passed, over its life
    streak: int = 0  # tasks verified since its last fault
    faults: int = 0  # proven faults (failed audits, lost disputes, fake hardware)
    uptime: float = 1.0  # share of promised time it was reachable
    auditor_faults: int = 0  # known-answer tasks it rubber-stamped


# --- detection and deterrence -------------------------------------------------------


def detection_probability(p: float, q: float, f: float, n: int) -> float:
    """P(a provider cheating on share ``f`` is caught within ``n`` tasks) at a fixed rate."""
    return 1.0 - (1.0 - p * q * f) ** n


def escape_probability(rates: Iterable[float], q: float, f: float) -> float:
    """P(no cheat caught) over tasks audited at the given successive ``rates``."""
    survive = 1.0
    for p in rates:
        survive *= 1.0 - p * q * f
    return survive


def min_audit_rate(saving: int, reward: int, stake: int, q: float) -> float:
    """The smallest audit rate at which cheating saves less than it risks (capped at 1)."""
    if saving <= 0:
        return 0.0
    at_risk = q * (reward + stake)
    if at_risk <= 0:
        return 1.0
    return min(1.0, saving / at_risk)


def rate_for_detection(target: float, n: int, q: float, f: float) -> float:
    """The fixed rate that catches a share-``f`` cheater within ``n`` tasks w.p. ``target``."""
    if not 0.0 < target < 1.0 or n <= 0:
        raise InvalidInput("target must lie in (0, 1) and n be positive")
    per_task: float = 1.0 - (1.0 - target) ** (1.0 / n)
    return min(1.0, per_task / (q * f))


def min_stake_for_bid(value: int, params: VerificationParams = DEFAULT_PARAMS) -> int:
    """The stake a provider needs to bid ``value`` per task (0 below the unstaked limit).

    From ``saving <= p*q*(reward + stake)`` at the floor rate:
    ``stake >= reward * (saving_ratio - p*q) / (p*q)``.
    """
    if value <= params.unstaked_bid_limit:
        return 0
    pq = params.floor * params.catch_rate
    if pq >= params.saving_ratio:
        return 0
    return math.ceil(value * (params.saving_ratio - pq) / pq)


def max_bid_for_stake(stake: int, params: VerificationParams = DEFAULT_PARAMS) -> int:
    """The largest per-task bid ``stake`` allows (the inverse of ``min_stake_for_bid``)."""
    pq = params.floor * params.catch_rate
    if pq >= params.saving_ratio:
        return max(params.unstaked_bid_limit, stake)
    return max(params.unstaked_bid_limit, int(stake * pq / (params.saving_ratio - pq)))


# --- the audit rate -----------------------------------------------------------------


def history_rate(streak: int, params: VerificationParams = DEFAULT_PARAMS) -> float:
    """The part of the audit rate that follows the record: 1 in probation, then decaying."""
    if streak < params.probation_tasks:
        return 1.0
    return math.exp(-(streak - params.probation_tasks) / params.decay_tasks)


def audit_rate(
    history: ProviderRecord,
    stake: int,
    params: VerificationParams = DEFAULT_PARAMS,
    reward: int | None = None,
) -> float:
    """The probability that the next result of this provider is audited.

    ``max(floor, p_deter, p(streak))`` as derived in the module docstring; ``reward`` is
    the task's price (without it only the floor bounds the rate from below).
    """
    if stake < 0:
        raise InvalidInput(f"stake cannot be negative, got {stake}")
    rate = max(params.floor, history_rate(history.streak, params))
    if reward is not None:
        saving = int(reward * params.saving_ratio)
        rate = max(rate, min_audit_rate(saving, reward, stake, params.catch_rate))
    return min(1.0, rate)


def after_verified(record: ProviderRecord) -> ProviderRecord:
    """The record once one more of its results passed an audit."""
    return replace(record, verified=record.verified + 1, streak=record.streak + 1)


def after_fault(record: ProviderRecord) -> ProviderRecord:
    """The record after a proven fault: the streak restarts, so audits go back to 100 %."""
    return replace(record, faults=record.faults + 1, streak=0)


# --- choosing the auditor -----------------------------------------------------------


class CheckKind(StrEnum):
    AUDIT = "audit"  # re-execute the task and compare
    KNOWN_ANSWER = "known_answer"  # a forced error sent to the auditor to test it


@dataclass(frozen=True)
class Check:
    """A decision to verify ``task_ref``: ``auditor`` None means no eligible auditor yet
    (keep the result held and plan again later)."""

    task_ref: str
    provider: str
    auditor: str | None
    rate: float
    kind: CheckKind = CheckKind.AUDIT


def is_banned(record: ProviderRecord, params: VerificationParams = DEFAULT_PARAMS) -> bool:
    """Repeated proven faults ban the provider's address."""
    return record.faults >= params.ban_after_faults


def may_audit(
    auditor: ProviderRecord, provider: ProviderRecord, params: VerificationParams = DEFAULT_PARAMS
) -> bool:
    """An auditor must be another provider of another operator, in good standing."""
    return (
        auditor.address.lower() != provider.address.lower()
        and auditor.operator.lower() != provider.operator.lower()
        and not is_banned(auditor, params)
        and auditor.auditor_faults < params.auditor_ban_after
    )


def choose_auditor(
    provider: ProviderRecord,
    candidates: Sequence[ProviderRecord],
    rng: random.Random,
    params: VerificationParams = DEFAULT_PARAMS,
    exclude: Iterable[str] = (),
) -> ProviderRecord | None:
    """A random eligible auditor, from another region when one exists, and among those
    preferably of the same device class (so results can be compared exactly)."""
    skip = {a.lower() for a in exclude}
    eligible = [
        c for c in candidates if may_audit(c, provider, params) and c.address.lower() not in skip
    ]
    if not eligible:
        return None
    elsewhere = [c for c in eligible if c.region != provider.region] or eligible
    same_class = [c for c in elsewhere if c.device_class == provider.device_class] or elsewhere
    return same_class[rng.randrange(len(same_class))]


def plan_verification(
    task_ref: str,
    provider: ProviderRecord,
    candidates: Sequence[ProviderRecord],
    rng: random.Random,
    params: VerificationParams = DEFAULT_PARAMS,
    *,
    stake: int = 0,
    reward: int | None = None,
) -> Check | None:
    """Decide whether to audit one accepted result and who audits it; None means no audit.

    Draws exactly one number from ``rng`` for the decision (and one more for the auditor
    when audited), so a seeded run replays identically.
    """
    rate = audit_rate(provider, stake, params, reward)
    if rng.random() >= rate:
        return None
    auditor = choose_auditor(provider, candidates, rng, params)
    return Check(task_ref, provider.address, auditor.address if auditor else None, rate)


# --- judging the re-executions ------------------------------------------------------


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # the provider's result stands
    REJECTED = "rejected"  # the provider's result is wrong: fault
    ESCALATE = "escalate"  # no two results agree yet: ask another referee


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    faulty: tuple[str, ...] = ()  # parties whose result disagreed with the agreeing pair
    reason: str = ""


def adjudicate(
    provider: str, checkers: Sequence[str], agree: Callable[[str, str], bool]
) -> Decision:
    """Decide between a provider and its checkers (the auditor first, then referees).

    ``agree(a, b) -> bool`` compares two parties' results with the workload's own rule
    (exact, or within a calibrated tolerance). The first pair of agreeing results from
    different parties wins; every party that disagrees with it is at fault. A lone
    mismatch is never enough to fault anybody: one liar, as provider or as auditor,
    cannot make an honest party lose, and a referee is asked instead.
    """
    parties = [provider, *checkers]
    for i, a in enumerate(parties):
        for b in parties[i + 1 :]:
            if agree(a, b):
                faulty = tuple(
                    p for p in parties if p not in (a, b) and not agree(p, a) and not agree(p, b)
                )
                if provider in (a, b):
                    return Decision(Verdict.ACCEPTED, faulty, f"{a} and {b} agree")
                return Decision(Verdict.REJECTED, faulty, f"{a} and {b} agree against it")
    return Decision(Verdict.ESCALATE, (), "no two results agree yet")


# --- known-answer tasks (forced errors) ---------------------------------------------


def should_inject_known_answer(rng: random.Random, rate: float) -> bool:
    """Whether the next audit an auditor receives is a planted wrong result."""
    return rng.random() < rate


@dataclass(frozen=True)
class KnownAnswer:
    """A task whose true output the coordinator knows, paired with a planted wrong one."""

    task_ref: str
    true_hash: str
    planted_hash: str


def check_known_answer(ka: KnownAnswer, auditor_says_match: bool, auditor_hash: str) -> bool:
    """True if the auditor did the work: it must reject the planted result and report
    the true output. A lazy auditor that rubber-stamps or invents a hash fails."""
    return not auditor_says_match and auditor_hash == ka.true_hash


def after_known_answer(record: ProviderRecord, passed: bool) -> ProviderRecord:
    """An auditor's record after a known-answer task."""
    return record if passed else replace(record, auditor_faults=record.auditor_faults + 1)


# --- hold-back ----------------------------------------------------------------------


@dataclass(frozen=True)
class Payout:
    """Earnings for one task, locked until ``earned_at + window``."""

    ref: str
    provider: str
    amount: int
    earned_at: float


def release_time(payout: Payout, window: float) -> float:
    return payout.earned_at + window


def releasable(payouts: Iterable[Payout], now: float, window: float) -> list[Payout]:
    """The payouts whose challenge window has passed at ``now``."""
    return [p for p in payouts if release_time(p, window) <= now]


def still_held(payouts: Iterable[Payout], now: float, window: float) -> list[Payout]:
    """The payouts that a late-detected fault can still claw back."""
    return [p for p in payouts if release_time(p, window) > now]


# --- stake and slashing -------------------------------------------------------------


def slash_amount(stake: int, params: VerificationParams = DEFAULT_PARAMS) -> int:
    """What one proven fault costs out of ``stake``."""
    return stake * params.slash_bps // BPS


def slash_split(amount: int, params: VerificationParams = DEFAULT_PARAMS) -> tuple[int, int, int]:
    """``(to_buyer, to_auditor, burned)``; the parts sum to ``amount`` exactly."""
    if amount < 0:
        raise InvalidInput(f"slash amount cannot be negative, got {amount}")
    to_buyer = amount * params.slash_buyer_bps // BPS
    to_auditor = amount * params.slash_auditor_bps // BPS
    return to_buyer, to_auditor, amount - to_buyer - to_auditor


def may_join_enterprise(stake: int, params: VerificationParams = DEFAULT_PARAMS) -> bool:
    return stake >= params.enterprise_min_stake


def unbonded_at(requested_at: float, params: VerificationParams = DEFAULT_PARAMS) -> float:
    """When stake whose unbonding was requested at ``requested_at`` may be released."""
    return requested_at + params.unbonding_s


def may_release_stake(
    requested_at: float, now: float, params: VerificationParams = DEFAULT_PARAMS
) -> bool:
    return now >= unbonded_at(requested_at, params)


# --- reputation ---------------------------------------------------------------------


def reputation(record: ProviderRecord, params: VerificationParams = DEFAULT_PARAMS) -> float:
    """A score in [0, 1]: verified work raises it, each fault weighs like many tasks,
    uptime scales it. A newcomer starts at half the uptime; a banned address scores 0."""
    if is_banned(record, params):
        return 0.0
    prior = params.reputation_prior_tasks
    good = record.verified + prior / 2
    total = record.verified + prior + params.reputation_fault_weight * record.faults
    return max(0.0, min(1.0, record.uptime)) * good / total


# --- evidence -----------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Everything a verification decision rests on, kept for `jobs show --verification`."""

    task_ref: str
    provider: str
    checkers: tuple[str, ...]
    verdict: Verdict
    reason: str
    rerun: str  # what was re-executed: "full task", "tiles 3,7", "steps 1200-1201"
    output_hashes: dict[str, str] = field(default_factory=dict)  # party -> output hash
    commitments: dict[str, str] = field(default_factory=dict)  # party -> commitment
    receipt_signatures: dict[str, str] = field(default_factory=dict)  # party -> signature
    faulty: tuple[str, ...] = ()
    decided_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON types."""
        body = asdict(self)
        body["verdict"] = str(self.verdict)
        body["checkers"] = list(self.checkers)
        body["faulty"] = list(self.faulty)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Evidence:
        return cls(
            task_ref=str(body["task_ref"]),
            provider=str(body["provider"]),
            checkers=tuple(body.get("checkers", ())),
            verdict=Verdict(body["verdict"]),
            reason=str(body.get("reason", "")),
            rerun=str(body.get("rerun", "")),
            output_hashes=dict(body.get("output_hashes", {})),
            commitments=dict(body.get("commitments", {})),
            receipt_signatures=dict(body.get("receipt_signatures", {})),
            faulty=tuple(body.get("faulty", ())),
            decided_at=float(body.get("decided_at", 0.0)),
        )
