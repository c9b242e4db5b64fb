from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hedging import (
    HedgePolicy,
    QuantileWindow,
    RaceCopy,
    RunningTask,
    hedge_target,
    p95,
    quantile,
    race_payouts,
    should_hedge,
    stragglers,
)


def window(values: list[float], size: int = 500) -> QuantileWindow:
    w = QuantileWindow(size)
    for v in values:
        w.add(v)
    return w


def test_p95_nearest_rank() -> None:
    assert p95(range(1, 101)) == 95
    assert p95([3.0]) == 3.0
    assert p95([1, 2, 3]) == 3  # too few samples: the p95 is the worst seen
    with pytest.raises(InvalidInput):
        p95([])


@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=300),
    st.integers(1, 100),
)
def test_streaming_window_agrees_with_the_batch_quantile(values: list[float], size: int) -> None:
    w = window(values, size)
    recent = values[-size:]
    assert len(w) == len(recent)
    for q in (0.5, 0.95, 0.99, 1.0):
        assert w.quantile(q) == quantile(recent, q)


def test_stragglers_past_the_multiple_of_p95_get_a_copy() -> None:
    durations = {"render:rtx4090": window([10.0] * 19 + [20.0] * 5)}  # p95 = 20 s
    running = [
        RunningTask("fast", "render:rtx4090", started_at=100),
        RunningTask("slow", "render:rtx4090", started_at=60),
        RunningTask("copied", "render:rtx4090", started_at=0, copies=2),
        RunningTask("unknown-class", "train:cpu", started_at=0),
    ]
    # now=131: "slow" ran 71 s > 1.5 x 20 s; "fast" ran 31 s, just above 30 s.
    assert stragglers(running, durations, now=131) == ["slow", "fast"]
    assert stragglers(running, durations, now=129) == ["slow"]


def test_no_speculation_before_enough_samples() -> None:
    durations = {"c": window([1.0] * 5)}
    assert stragglers([RunningTask("t", "c", 0)], durations, now=1000) == []
    lax = HedgePolicy(min_samples=5)
    assert stragglers([RunningTask("t", "c", 0)], durations, now=1000, policy=lax) == ["t"]


def test_hedge_at_p95_latency_once_and_only_with_a_spare_replica() -> None:
    lat = window([float(ms) for ms in range(1, 101)])  # p95 = 95 ms
    assert not should_hedge(90, lat, sent_to=1, replicas=2)
    assert should_hedge(95, lat, sent_to=1, replicas=2)
    assert not should_hedge(500, lat, sent_to=2, replicas=3)
    assert not should_hedge(500, lat, sent_to=1, replicas=1)
    assert hedge_target(["r1", "r2", "r3"], ["r1"]) == "r2"
    assert hedge_target(["r1"], ["r1"]) is None


def test_hedging_costs_about_five_percent_extra_load() -> None:
    rng = random.Random(7)
    lat = window([rng.lognormvariate(3, 0.5) for _ in range(500)], size=500)
    later = [rng.lognormvariate(3, 0.5) for _ in range(5000)]
    hedged = sum(should_hedge(x, lat, 1, 2) for x in later)
    assert 0.02 < hedged / len(later) < 0.09


def test_race_first_verified_wins_speculative_loser_paid_for_time() -> None:
    copies = [
        RaceCopy("orig", started_at=0, speculative=False),
        RaceCopy("spec", started_at=40, speculative=True),
    ]
    # The original finished first: the copy ran 20 s at 3 units/s.
    assert race_payouts(copies, "orig", task_fee=100, rate_per_s=3, cancelled_at=60) == {
        "orig": 100,
        "spec": 60,
    }
    # The copy won: the straggling original earns nothing.
    assert race_payouts(copies, "spec", task_fee=100, rate_per_s=3, cancelled_at=60) == {
        "orig": 0,
        "spec": 100,
    }
    # A long-running copy never earns more than the task itself.
    assert race_payouts(copies, "orig", 100, 3, cancelled_at=1000)["spec"] == 100


def test_race_unverified_copies_earn_nothing() -> None:
    copies = [
        RaceCopy("orig", 0, speculative=False),
        RaceCopy("bad", 10, speculative=True, verified=False),
    ]
    assert race_payouts(copies, "orig", 100, 3, 60)["bad"] == 0
    with pytest.raises(InvalidInput):
        race_payouts(copies, "bad", 100, 3, 60)
    with pytest.raises(InvalidInput):
        race_payouts(copies, "nobody", 100, 3, 60)


def test_policy_is_validated() -> None:
    with pytest.raises(InvalidInput):
        HedgePolicy(straggler_multiple=0.5)


def test_a_slowdown_of_the_whole_network_races_only_a_share_of_its_tasks() -> None:
    # an overloaded network: every one of 400 running tasks is past 1.5 x the usual p95
    durations = {"echo:cpu": window([1.0] * 30)}
    running = [RunningTask(f"t{i}", "echo:cpu", started_at=i) for i in range(400)]
    chosen = stragglers(running, durations, now=1000)
    assert chosen == [f"t{i}" for i in range(20)]  # 5% of the running tasks, oldest first
    racing = [RunningTask(f"r{i}", "echo:cpu", started_at=0, copies=2) for i in range(15)]
    # the 15 racing already take 15 of the 20 places (5% of 415)
    assert len(stragglers(running + racing, durations, now=1000)) == 5
    # a small network keeps a few copies however few tasks run
    assert len(stragglers(running[:3], durations, now=1000)) == 3


def test_the_racing_share_is_checked() -> None:
    with pytest.raises(InvalidInput, match="racing share"):
        HedgePolicy(max_racing_share=1.5)


def test_no_copies_while_the_coordinator_itself_lags() -> None:
    # the tasks are slow because the coordinator answers late: a copy would queue too
    durations = {"echo:cpu": window([1.0] * 30)}
    running = [RunningTask("t", "echo:cpu", started_at=0)]
    assert stragglers(running, durations, now=100, coordinator_lag_s=0.2) == ["t"]
    assert stragglers(running, durations, now=100, coordinator_lag_s=2.0) == []
