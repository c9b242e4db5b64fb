from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core import ledger as L
from gpudepin.core import verification as V
from gpudepin.core.errors import InsufficientFunds, InvalidInput
from gpudepin.core.money import UNIT

P = V.DEFAULT_PARAMS


def rec(address: str = "0xaa", operator: str = "op-a", **kw: object) -> V.ProviderRecord:
    return V.ProviderRecord(address, operator, **kw)  # type: ignore[arg-type]


# --- audit rate ---------------------------------------------------------------------


def test_new_provider_is_audited_on_every_task() -> None:
    assert V.audit_rate(rec(), stake=10**6 * UNIT) == 1.0
    assert V.audit_rate(rec(streak=P.probation_tasks - 1), stake=10**6 * UNIT) == 1.0


def test_rate_falls_with_history_to_the_floor() -> None:
    rates = [V.audit_rate(rec(streak=s), 0) for s in range(0, 1000, 10)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(P.floor)
    assert V.audit_rate(rec(streak=P.probation_tasks + 20), 0) < 0.5


def test_rate_jumps_back_to_one_after_a_fault() -> None:
    veteran = rec(verified=5000, streak=5000)
    assert V.audit_rate(veteran, 0) == pytest.approx(P.floor)
    assert V.audit_rate(V.after_fault(veteran), 0) == 1.0


def test_low_stake_raises_the_rate_for_a_big_task() -> None:
    veteran = rec(verified=5000, streak=5000)
    reward = 10 * UNIT
    unstaked = V.audit_rate(veteran, 0, reward=reward)
    staked = V.audit_rate(veteran, V.min_stake_for_bid(reward), reward=reward)
    assert unstaked == 1.0
    assert staked == pytest.approx(P.floor)


def test_floor_is_the_deterrent_rate_at_nineteen_rewards_of_stake() -> None:
    reward = 2 * UNIT
    assert V.min_stake_for_bid(reward) == 19 * reward
    assert V.min_audit_rate(reward, reward, 19 * reward, 1.0) == pytest.approx(0.05)
    assert V.max_bid_for_stake(19 * reward) == reward
    assert V.min_stake_for_bid(P.unstaked_bid_limit) == 0


def test_detection_math() -> None:
    assert V.detection_probability(1.0, 1.0, 0.1, 1) == pytest.approx(0.1)
    assert V.detection_probability(0.05, 1.0, 0.1, 200) == pytest.approx(1 - 0.995**200)
    p = V.rate_for_detection(0.99, 100, 1.0, 0.1)
    assert V.detection_probability(p, 1.0, 0.1, 100) == pytest.approx(0.99)
    schedule = [V.audit_rate(rec(streak=s), 0) for s in range(100)]
    assert V.escape_probability(schedule, 1.0, 0.1) < 1e-3


def test_params_refuse_nonsense() -> None:
    with pytest.raises(InvalidInput):
        V.VerificationParams(floor=0.0)
    with pytest.raises(InvalidInput):
        V.VerificationParams(slash_buyer_bps=8000, slash_auditor_bps=3000)


# --- auditor choice -----------------------------------------------------------------


def test_auditor_is_another_operator_and_prefers_another_region() -> None:
    provider = rec("0xp", "op-a", region="eu")
    candidates = [
        provider,
        rec("0xsame-op", "op-a", region="us"),
        rec("0xsame-region", "op-b", region="eu"),
        rec("0xgood", "op-c", region="us"),
    ]
    rng = random.Random(1)
    for i in range(50):
        check = V.plan_verification(f"t{i}", provider, candidates, rng)
        assert check is not None and check.auditor == "0xgood"


def test_same_region_is_used_when_nothing_else_is_left() -> None:
    provider = rec("0xp", "op-a", region="eu")
    only = rec("0xq", "op-b", region="eu")
    assert V.choose_auditor(provider, [provider, only], random.Random(0)) == only


def test_no_eligible_auditor_still_plans_a_check() -> None:
    provider = rec("0xp", "op-a")
    check = V.plan_verification("t", provider, [rec("0xq", "op-a")], random.Random(0))
    assert check is not None and check.auditor is None


def test_banned_and_lazy_auditors_are_skipped() -> None:
    provider = rec("0xp", "op-a", region="eu")
    banned = rec("0xb", "op-b", faults=P.ban_after_faults)
    lazy = rec("0xl", "op-c", auditor_faults=P.auditor_ban_after)
    good = rec("0xg", "op-d", region="eu")
    picks = {V.choose_auditor(provider, [banned, lazy, good], random.Random(s)) for s in range(20)}
    assert picks == {good}


def test_plan_is_reproducible_from_the_seed() -> None:
    provider = rec("0xp", "op-a", streak=80)
    cands = [rec(f"0x{i}", f"op{i}", region=str(i % 3)) for i in range(10)]

    def run(seed: int) -> list[V.Check | None]:
        rng = random.Random(seed)
        return [V.plan_verification(f"t{i}", provider, cands, rng) for i in range(200)]

    assert run(3) == run(3)
    audited = sum(c is not None for c in run(3))
    assert 0 < audited < 200


# --- adjudication -------------------------------------------------------------------


def agree_by(results: dict[str, str]) -> Callable[[str, str], bool]:
    return lambda a, b: results[a] == results[b]


def test_matching_audit_accepts() -> None:
    d = V.adjudicate("p", ["a"], agree_by({"p": "x", "a": "x"}))
    assert d.verdict is V.Verdict.ACCEPTED and d.faulty == ()


def test_one_mismatch_faults_nobody_until_a_referee_speaks() -> None:
    d = V.adjudicate("p", ["a"], agree_by({"p": "x", "a": "y"}))
    assert d.verdict is V.Verdict.ESCALATE and d.faulty == ()


def test_lying_auditor_cannot_sink_an_honest_provider() -> None:
    d = V.adjudicate("p", ["liar", "ref"], agree_by({"p": "x", "liar": "y", "ref": "x"}))
    assert d.verdict is V.Verdict.ACCEPTED and d.faulty == ("liar",)


def test_cheating_provider_is_rejected_by_two_agreeing_checkers() -> None:
    d = V.adjudicate("p", ["a", "ref"], agree_by({"p": "bad", "a": "x", "ref": "x"}))
    assert d.verdict is V.Verdict.REJECTED and d.faulty == ("p",)


# --- known answers ------------------------------------------------------------------


def test_known_answer_catches_a_rubber_stamping_auditor() -> None:
    ka = V.KnownAnswer("t", true_hash="good", planted_hash="bad")
    assert V.check_known_answer(ka, auditor_says_match=False, auditor_hash="good")
    assert not V.check_known_answer(ka, auditor_says_match=True, auditor_hash="bad")
    assert not V.check_known_answer(ka, auditor_says_match=False, auditor_hash="made-up")
    lazy = rec()
    for _ in range(P.auditor_ban_after):
        lazy = V.after_known_answer(lazy, passed=False)
    assert not V.may_audit(lazy, rec("0xother", "op-z"))


def test_known_answer_injection_follows_its_rate() -> None:
    rng = random.Random(5)
    hits = sum(V.should_inject_known_answer(rng, 0.02) for _ in range(10_000))
    assert 120 < hits < 280
    assert not any(V.should_inject_known_answer(rng, 0.0) for _ in range(1000))


# --- hold-back ----------------------------------------------------------------------


def test_earnings_release_only_after_the_window() -> None:
    window = P.hold_window_s
    payouts = [V.Payout("t1", "0xp", 5, 0.0), V.Payout("t2", "0xp", 7, 100.0)]
    assert V.releasable(payouts, window - 1, window) == []
    assert V.releasable(payouts, window, window) == [payouts[0]]
    assert V.still_held(payouts, window, window) == [payouts[1]]
    assert V.releasable(payouts, window + 100, window) == payouts


# --- stake, slashing and the ledger -------------------------------------------------


@given(st.integers(min_value=0, max_value=10**30))
def test_slash_split_sums_to_the_amount(amount: int) -> None:
    buyer, auditor, burned = V.slash_split(amount)
    assert buyer + auditor + burned == amount
    assert min(buyer, auditor, burned) >= 0


@given(
    staked=st.integers(min_value=1, max_value=10**24),
    unbonded=st.integers(min_value=0, max_value=10**24),
    want=st.integers(min_value=1, max_value=3 * 10**24),
)
def test_slash_keeps_the_books_balanced(staked: int, unbonded: int, want: int) -> None:
    led = L.InMemoryLedger()
    led.apply(L.deposit("0xp", staked + unbonded))
    led.apply(L.stake(led.balances, "0xp", staked + unbonded))
    if unbonded:
        led.apply(L.unbond(led.balances, "0xp", unbonded))
    amount = min(want, staked + unbonded)
    split = V.slash_split(amount)
    led.apply(L.slash(led.balances, "0xp", amount, "0xbuyer", "0xaud", split))
    assert L.imbalances(led.balances) == []
    assert led.balance(L.available_account("0xbuyer")) == split[0]
    assert led.balance(L.earned_account("0xaud")) == split[1]
    assert led.balance(L.BURNED) == split[2]
    left = led.balance(L.stake_account("0xp")) + led.balance(L.unbonding_account("0xp"))
    assert left == staked + unbonded - amount
    if want > staked + unbonded:
        with pytest.raises(InsufficientFunds):
            L.slash(led.balances, "0xp", want, "0xb", "0xa", V.slash_split(want))


def test_hold_back_makes_a_buyer_whole_after_a_late_fault() -> None:
    led = L.InMemoryLedger()
    led.apply_all([L.deposit("0xbuyer", 100), L.deposit("0xp", 1000)])
    led.apply(L.stake(led.balances, "0xp", 1000))
    led.apply(L.lock_escrow(led.balances, "0xbuyer", "job1", 100))
    led.apply(L.pay_into_hold(led.balances, "0xbuyer", "job1", "0xp", 100, fee_bps=500))
    assert led.balance(L.earned_account("0xp")) == 0  # nothing withdrawable yet
    led.apply(L.claw_back(led.balances, "0xp", "0xbuyer", 95, "job1"))
    led.apply(L.pay_auditor_from_fees(led.balances, "0xaud", 5, "job1"))
    amount = V.slash_amount(1000)
    led.apply(L.slash(led.balances, "0xp", amount, "0xbuyer", "0xaud", V.slash_split(amount)))
    # the buyer got back what the provider earned, plus half the slash
    assert led.balance(L.available_account("0xbuyer")) == 95 + 50
    assert L.imbalances(led.balances) == []


def test_unbonding_waits_for_its_delay() -> None:
    led = L.InMemoryLedger()
    led.apply(L.deposit("0xp", 50))
    led.apply(L.stake(led.balances, "0xp", 50))
    led.apply(L.unbond(led.balances, "0xp", 20))
    assert not V.may_release_stake(requested_at=0.0, now=P.unbonding_s - 1)
    assert V.may_release_stake(requested_at=0.0, now=P.unbonding_s)
    led.apply(L.release_stake(led.balances, "0xp", 20))
    assert led.balance(L.available_account("0xp")) == 20
    assert led.balance(L.stake_account("0xp")) == 30
    assert V.may_join_enterprise(P.enterprise_min_stake)
    assert not V.may_join_enterprise(P.enterprise_min_stake - 1)


def test_release_held_makes_earnings_withdrawable() -> None:
    led = L.InMemoryLedger()
    led.apply(L.deposit("0xb", 10))
    led.apply(L.lock_escrow(led.balances, "0xb", "j", 10))
    led.apply(L.pay_into_hold(led.balances, "0xb", "j", "0xp", 10, fee_bps=0))
    led.apply(L.release_held(led.balances, "0xp", 10))
    led.apply(L.withdraw(led.balances, L.earned_account("0xp"), 10))
    assert L.imbalances(led.balances) == []


# --- reputation ---------------------------------------------------------------------


def test_reputation_rises_with_work_and_drops_with_faults() -> None:
    new = rec()
    veteran = rec(verified=1000, streak=1000)
    faulted = V.after_fault(veteran)
    assert V.reputation(new) == pytest.approx(0.5)
    assert V.reputation(veteran) > 0.99
    assert V.reputation(faulted) < V.reputation(veteran)
    assert V.reputation(replace(veteran, uptime=0.5)) == pytest.approx(V.reputation(veteran) / 2)


def test_repeated_faults_ban() -> None:
    r = rec(verified=10_000, streak=10_000)
    for _ in range(P.ban_after_faults - 1):
        r = V.after_fault(r)
    assert not V.is_banned(r)
    r = V.after_fault(r)
    assert V.is_banned(r) and V.reputation(r) == 0.0


# --- evidence -----------------------------------------------------------------------


def test_evidence_round_trips_through_json() -> None:
    import json

    ev = V.Evidence(
        task_ref="job1/t3",
        provider="0xp",
        checkers=("0xa", "0xr"),
        verdict=V.Verdict.REJECTED,
        reason="0xa and 0xr agree against it",
        rerun="full task",
        output_hashes={"0xp": "h1", "0xa": "h2", "0xr": "h2"},
        commitments={"0xp": "c1"},
        receipt_signatures={"0xp": "0xsig"},
        faulty=("0xp",),
        decided_at=12.5,
    )
    text = json.dumps(ev.to_json())
    assert V.Evidence.from_json(json.loads(text)) == ev
