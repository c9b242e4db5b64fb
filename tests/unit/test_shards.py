from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput, NoMatch, Unavailable
from gpudepin.core.placement import ProviderProfile
from gpudepin.core.shards import (
    CONSUMER_CHURN,
    StoredArtifact,
    durability,
    fewer_than_k_survive,
    live_shards,
    place_repairs,
    place_shards,
    repair_plan,
    shard_loss_probability,
)

REGIONS = ["eu-west", "eu-central", "us-east", "us-west", "ap-south"]


def pool(count: int, operators: int = 6) -> list[ProviderProfile]:
    return [
        ProviderProfile(f"0x{i:02x}", f"op{i % operators}", REGIONS[i % len(REGIONS)])
        for i in range(count)
    ]


def test_fresh_holder_loss_is_one_minus_weibull_survival() -> None:
    t = 5.0
    assert shard_loss_probability(t, age_h=0) == pytest.approx(1 - math.exp(-((t / 96) ** 0.75)))


def test_old_sessions_are_safer_holders() -> None:
    # Shape < 1: the hazard falls with age.
    young = shard_loss_probability(6, age_h=1)
    old = shard_loss_probability(6, age_h=500)
    assert old < young


@pytest.mark.parametrize("t", [0.5, 1.0, 6.0, 24.0, 200.0])
def test_steady_state_loss_matches_the_integral_of_survival(t: float) -> None:
    # F_e(t) = (1/mu) * integral of S from 0 to t, by the midpoint rule on a fine grid.
    steps = 20_000
    h = t / steps
    integral = sum(CONSUMER_CHURN.survival((i + 0.5) * h) for i in range(steps)) * h
    assert shard_loss_probability(t) == pytest.approx(integral / CONSUMER_CHURN.mean_h(), rel=1e-3)


def test_steady_state_hourly_loss_is_near_observed_interruptions() -> None:
    # market-facts.md: 1.1 interruptions per hour per 100 instances.
    assert 0.005 < shard_loss_probability(1.0) < 0.015


@given(
    st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))),
    st.floats(0, 1),
)
def test_equal_risks_give_the_binomial_tail(nk: tuple[int, int], q: float) -> None:
    n, k = nk
    expected = sum(math.comb(n, j) * (1 - q) ** j * q ** (n - j) for j in range(k))
    assert fewer_than_k_survive(k, [q] * n) == pytest.approx(expected, abs=1e-12)


def test_durability_grows_with_redundancy_and_falls_with_slower_repair() -> None:
    base = durability(4, 8, 1.0)
    assert durability(4, 12, 1.0).loss_per_interval < base.loss_per_interval
    assert durability(4, 6, 1.0).loss_per_interval > base.loss_per_interval
    assert durability(4, 8, 24.0).loss_per_year > base.loss_per_year
    assert base.nines > 4  # hourly repair of 4-of-8 keeps loss below 1e-4 a year
    assert 0 < base.loss_per_interval < base.loss_per_year < 1


def test_durability_with_known_holder_ages() -> None:
    fresh = durability(4, 8, 6.0, ages_h=[0.0] * 8)
    seasoned = durability(4, 8, 6.0, ages_h=[300.0] * 8)
    assert seasoned.loss_per_interval < fresh.loss_per_interval
    with pytest.raises(InvalidInput):
        durability(4, 8, 6.0, ages_h=[1.0])


def test_shards_go_to_distinct_operators_and_regions() -> None:
    art = place_shards("a1", 4, 8, pool(30, operators=8), random.Random(3))
    by_addr = {p.address: p for p in pool(30, operators=8)}
    holders = [by_addr[h] for h in art.holders if h]
    assert len(set(art.holders)) == 8
    assert len({p.operator for p in holders}) == 8
    assert max(Counter(p.region for p in holders).values()) == 2  # 8 over 5 regions
    with pytest.raises(NoMatch):
        place_shards("a2", 4, 8, pool(5), None)


@given(st.sets(st.integers(0, 7)))
def test_repair_triggers_at_k_plus_margin_and_restores_all(gone: set[int]) -> None:
    art = StoredArtifact("a", 4, 8, tuple(f"0x{i}" for i in range(8)))
    alive = [f"0x{i}" for i in range(8) if i not in gone]
    live = 8 - len(gone)
    if live < 4:
        with pytest.raises(Unavailable):
            repair_plan(art, alive, threshold_margin=2)
        return
    plan = repair_plan(art, alive, threshold_margin=2)
    assert plan == (sorted(gone) if live <= 6 else [])


@given(st.permutations(range(8)), st.integers(1, 3))
def test_repair_loop_never_lets_live_count_fall_to_k(order: list[int], margin: int) -> None:
    # Holders leave one at a time and the repair loop runs after each departure.
    art = StoredArtifact("a", 4, 8, tuple(f"0x{i}" for i in range(8)))
    alive = set(art.holders) - {None}
    spare = iter(f"0xnew{j}" for j in range(100))
    for leaving in order:
        alive.discard(art.holders[leaving])
        assert len(live_shards(art, {a for a in alive if a})) > art.k
        plan = repair_plan(art, {a for a in alive if a}, threshold_margin=margin)
        holders = list(art.holders)
        for i in plan:
            holders[i] = next(spare)
            alive.add(holders[i])
        art = StoredArtifact("a", 4, 8, tuple(holders))


def test_corrupt_shards_count_as_missing() -> None:
    holders = ("0x0", "0x1", "0x2", "0x3", "0x4")
    art = StoredArtifact("a", 2, 5, holders)
    assert repair_plan(art, holders, 1, corrupt={0}) == []  # 4 live > k + 1
    assert repair_plan(art, holders, 1, corrupt={0, 3}) == [0, 3]
    with pytest.raises(InvalidInput):
        repair_plan(art, holders, 0)


def test_repairs_go_to_new_providers_spread_around_the_survivors() -> None:
    providers = pool(12, operators=6)
    art = StoredArtifact("a", 2, 4, tuple(p.address for p in providers[:4]))
    alive = [providers[0].address, providers[1].address]  # ops 0 and 1 survive
    placed = place_repairs(art, [2, 3], providers, alive, random.Random(0))
    by_addr = {p.address: p for p in providers}
    new = [by_addr[a] for a in placed.values()]
    assert set(placed) == {2, 3}
    assert not set(placed.values()) & set(art.holders)
    assert {p.operator for p in new}.isdisjoint({"op0", "op1"})
