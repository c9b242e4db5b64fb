"""The spot market's rules: validation, bids, sealed-bid clearing, instant spot, explanations."""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudepin.core.errors import Conflict, Forbidden, InvalidInput, NoMatch
from gpudepin.core.hardware import Tier
from gpudepin.core.market import (
    Ask,
    Award,
    Bid,
    NoMatchResult,
    Order,
    OrderKind,
    OrderState,
    ProviderView,
    Requirements,
    check_bid,
    clear,
    display_price,
    eligible,
    explain_no_match,
    order_transition,
    ready_to_clear,
    reaward,
    score,
    validate_order,
)
from gpudepin.core.money import UNIT
from gpudepin.core.orderbook import OrderBook, PriceTape, best_asks

PER_HOUR = UNIT // 3600  # base units per GPU-second for 1 token per GPU-hour


def per_hour(tokens: float) -> int:
    return round(tokens * 100) * PER_HOUR // 100


def lease(max_per_hour: float = 0.30, gpus: int = 1, **req: object) -> Order:
    return validate_order(
        Order(
            "L1",
            OrderKind.LEASE,
            "0xbuyer",
            Requirements(**req),  # type: ignore[arg-type]
            per_hour(max_per_hour),
            gpus,
            created_at=0.0,
            duration_s=3600,
            bid_window_s=30.0,
        )
    )


def batch(max_price: int = 100, tasks: int = 10, **req: object) -> Order:
    return validate_order(
        Order(
            "B1",
            OrderKind.BATCH,
            "0xbuyer",
            Requirements(**req),  # type: ignore[arg-type]
            max_price,
            tasks,
            created_at=0.0,
            bid_window_s=30.0,
        )
    )


def view(i: int, gpu: str = "rtx4090", region: str = "eu-west", **kw: object) -> ProviderView:
    return ProviderView.of(f"0x{i:04x}", gpu, region, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_price": 0}, "max_price"),
        ({"max_price": -5}, "max_price"),
        ({"quantity": 0}, "quantity"),
        ({"requirements": Requirements(gpu_class="gtx9999")}, "gpu_class"),
        ({"requirements": Requirements(regions=())}, "regions"),
        ({"requirements": Requirements(min_vram_gb=500)}, "requirements"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": 10**9}, "duration_s"),
        ({"bid_window_s": -1.0}, "bid_window_s"),
    ],
)
def test_bad_orders_are_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    order = replace(lease(), **change)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as info:
        validate_order(order)
    assert info.value.details["field"] == field
    assert field in info.value.message


def test_a_batch_order_with_a_duration_is_refused() -> None:
    with pytest.raises(InvalidInput, match="duration_s"):
        validate_order(replace(batch(), duration_s=60))


def test_validation_normalises_class_and_regions() -> None:
    order = lease(gpu_class="RTX4090", regions=("EU-West", "eu-west"))
    assert order.requirements.gpu_class == "rtx4090"
    assert order.requirements.regions == ("eu-west",)


def test_order_state_machine_refuses_reopening_a_cancelled_order() -> None:
    assert order_transition("awarded", "open") is OrderState.OPEN
    with pytest.raises(Conflict):
        order_transition("cancelled", "open")


# ---------------------------------------------------------------- eligibility and bids


def test_eligible_lists_every_reason() -> None:
    order = lease(gpu_class="a100-80g", regions=("us-east",), tier=Tier.ENTERPRISE)
    reasons = eligible(order, view(1, free_capacity=0))
    assert any("has rtx4090, the order needs a100-80g" in r for r in reasons)
    assert any("is in eu-west" in r for r in reasons)
    assert any("consumer tier" in r for r in reasons)
    assert any("has 0 free" in r for r in reasons)
    assert eligible(lease(gpu_class="rtx4090"), view(1)) == []


def test_enterprise_provider_may_serve_a_consumer_order_but_not_the_reverse() -> None:
    assert eligible(lease(tier=Tier.CONSUMER), view(1, gpu="h100-80g")) == []
    assert eligible(lease(tier=Tier.ENTERPRISE), view(1)) != []


def test_deny_list_and_jurisdictions_exclude_providers() -> None:
    order = lease(deny_regions=frozenset({"eu-west"}))
    assert any("denies" in r for r in eligible(order, view(1)))
    order = lease(jurisdictions=frozenset({"EU"}))
    assert eligible(order, view(1, jurisdiction="EU")) == []
    assert any("jurisdiction" in r for r in eligible(order, view(1, jurisdiction="US")))


def good_bid(order: Order, i: int = 1, price: int | None = None, capacity: int = 1) -> Bid:
    return Bid(order.id, f"0x{i:04x}", price or order.max_price // 2, capacity, valid_until=100.0)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"price": 0}, InvalidInput, "price: must be positive"),
        ({"price": -3}, InvalidInput, "price: must be positive"),
        ({"capacity": 0}, InvalidInput, "capacity: must be positive"),
        ({"price": 10**30}, InvalidInput, "above the order's maximum"),
        ({"valid_until": 10.0}, InvalidInput, "expires before the auction closes"),
        ({"order_id": "other"}, InvalidInput, "not L1"),
        ({"provider": "0xmallory"}, Forbidden, "presented as"),
    ],
)
def test_bad_bids_are_refused_with_their_reason(
    change: dict[str, object], error: type[Exception], words: str
) -> None:
    order = lease()
    bid = replace(good_bid(order), **change)  # type: ignore[arg-type]
    with pytest.raises(error, match=words):
        check_bid(order, bid, view(1), [], now=1.0)


def test_bid_from_a_provider_that_does_not_meet_the_requirements_is_refused() -> None:
    order = lease(gpu_class="h100-80g")
    with pytest.raises(InvalidInput, match="has rtx4090, the order needs h100-80g"):
        check_bid(order, good_bid(order), view(1), [], now=1.0)


def test_second_bid_from_the_same_provider_is_a_conflict() -> None:
    order = lease()
    first = good_bid(order)
    check_bid(order, first, view(1), [], now=1.0)
    with pytest.raises(Conflict, match="already bid"):
        check_bid(order, replace(first, price=first.price - 1), view(1), [first], now=2.0)


def test_bids_after_the_window_or_on_a_closed_order_are_conflicts() -> None:
    order = lease()
    with pytest.raises(Conflict, match="bid window closed"):
        check_bid(order, good_bid(order), view(1), [], now=31.0)
    with pytest.raises(Conflict, match="awarded"):
        check_bid(replace(order, state=OrderState.AWARDED), good_bid(order), view(1), [], 1.0)


def test_lease_bid_must_hold_all_gpus_on_one_machine() -> None:
    order = lease(gpus=2)
    with pytest.raises(InvalidInput, match="all 2 GPUs on one machine"):
        check_bid(order, good_bid(order, capacity=1), view(1, free_capacity=2), [], 1.0)
    with pytest.raises(InvalidInput, match="more than the 1 free"):
        check_bid(order, good_bid(order, capacity=2), view(1, free_capacity=1), [], 1.0)


# ---------------------------------------------------------------- scoring and clearing


def test_score_is_price_dominant_with_risk_adjustments() -> None:
    order = lease(max_per_hour=1.0)
    bid = Bid("L1", "0x0001", order.max_price // 2, 1, 100.0)
    assert score(bid, view(1, reputation=1.0, reliability=1.0), order) == pytest.approx(0.5)
    assert score(bid, view(1), order) == pytest.approx(0.4375)
    # a much cheaper unknown provider beats a perfect one; a slightly cheaper one does not
    perfect = (Bid("L1", "0x0001", 500, 1, 100.0), view(1, reputation=1.0, reliability=1.0))
    assert score(Bid("L1", "0x0002", 300, 1, 100.0), view(2), order) > score(*perfect, order)
    assert score(Bid("L1", "0x0002", 490, 1, 100.0), view(2), order) < score(*perfect, order)


def test_cheapest_eligible_bid_wins_a_lease_and_pays_its_own_price() -> None:
    order = lease(max_per_hour=0.30, gpu_class="rtx4090")
    providers = {p.address: p for p in (view(1), view(2), view(3, gpu="rtx3090"))}
    bids = [
        Bid("L1", "0x0001", per_hour(0.25), 1, 100.0),
        Bid("L1", "0x0002", per_hour(0.20), 1, 100.0),
        Bid("L1", "0x0003", per_hour(0.10), 1, 100.0),  # wrong class: set aside
    ]
    award = clear(order, bids, providers, now=31.0)
    assert isinstance(award, Award)
    assert [(a.provider, a.price) for a in award.allocations] == [("0x0002", per_hour(0.20))]
    assert award.clearing_price == per_hour(0.20)
    assert award.cost == per_hour(0.20) * 3600
    assert {r.provider for r in award.released} == {"0x0001", "0x0003"}


def test_clearing_waits_for_the_window_unless_bids_cover_the_order() -> None:
    order = batch(tasks=4)
    providers = {p.address: p for p in (view(1, free_capacity=4), view(2, free_capacity=4))}
    one = [Bid("B1", "0x0001", 50, 4, 100.0)]
    assert not ready_to_clear(order, one, now=5.0)
    with pytest.raises(Conflict, match="open until"):
        clear(order, one, providers, now=5.0)
    two = [*one, Bid("B1", "0x0002", 60, 4, 100.0)]
    assert ready_to_clear(order, two, now=5.0)
    assert isinstance(clear(order, two, providers, now=5.0), Award)


def test_batch_is_split_across_winners_in_score_order() -> None:
    order = batch(max_price=100, tasks=10)
    providers = {view(i, free_capacity=6).address: view(i, free_capacity=6) for i in (1, 2, 3)}
    bids = [
        Bid("B1", "0x0001", 40, 6, 100.0),
        Bid("B1", "0x0002", 30, 6, 100.0),
        Bid("B1", "0x0003", 80, 6, 100.0),
    ]
    award = clear(order, bids, providers, now=31.0)
    assert isinstance(award, Award)
    assert [(a.provider, a.quantity, a.price) for a in award.allocations] == [
        ("0x0002", 6, 30),
        ("0x0001", 4, 40),
    ]
    assert award.clearing_price == 40 and award.unfilled == 0
    assert sorted((r.provider, r.capacity) for r in award.released) == [
        ("0x0001", 2),
        ("0x0003", 6),
    ]


def test_no_bids_is_a_no_match_with_a_reason() -> None:
    result = clear(lease(), [], {}, now=31.0)
    assert isinstance(result, NoMatchResult)
    assert "no provider bid" in result.reasons[0]
    with pytest.raises(NoMatch):
        raise result.to_error()


def test_reaward_skips_the_winner_that_never_started() -> None:
    order = lease()
    providers = {p.address: p for p in (view(1), view(2))}
    bids = [
        Bid("L1", "0x0001", per_hour(0.1), 1, 100.0),
        Bid("L1", "0x0002", per_hour(0.2), 1, 100.0),
    ]
    first = clear(order, bids, providers, now=31.0)
    assert isinstance(first, Award) and first.allocations[0].provider == "0x0001"
    again = reaward(order, bids, ["0x0001"], providers, now=60.0)
    assert isinstance(again, Award) and again.allocations[0].provider == "0x0002"
    assert isinstance(reaward(order, bids, ["0x0001", "0x0002"], providers, 60.0), NoMatchResult)


bid_lists = st.lists(
    st.tuples(
        st.integers(1, 40),  # provider number
        st.integers(1, 200),  # price
        st.integers(1, 12),  # capacity
        st.floats(0.0, 1.0),  # reputation
        st.floats(0.0, 1.0),  # reliability
        st.sampled_from(["rtx4090", "rtx3090"]),
    ),
    max_size=25,
    unique_by=lambda t: t[0],
)


@settings(max_examples=150, deadline=None)
@given(
    rows=bid_lists,
    quantity=st.integers(1, 30),
    max_price=st.integers(1, 200),
    kind=st.sampled_from(list(OrderKind)),
    seed=st.integers(0, 2**32),
)
def test_clearing_invariants(
    rows: list[tuple[int, int, int, float, float, str]],
    quantity: int,
    max_price: int,
    kind: OrderKind,
    seed: int,
) -> None:
    base = lease(gpu_class="rtx4090") if kind is OrderKind.LEASE else batch(gpu_class="rtx4090")
    order = replace(base, quantity=quantity, max_price=max_price)
    providers = {}
    bids = []
    for n, price, cap, rep, rel, gpu in rows:
        p = view(n, gpu=gpu, free_capacity=cap, reputation=rep, reliability=rel)
        providers[p.address] = p
        bids.append(Bid(order.id, p.address, price, cap, 100.0))
    result = clear(order, bids, providers, now=31.0)
    shuffled = list(bids)
    random.Random(seed).shuffle(shuffled)
    assert clear(order, shuffled, providers, now=31.0) == result, "depends on bid order"
    offered = {b.provider: b for b in bids}
    if isinstance(result, NoMatchResult):
        assert not any(
            b.price <= max_price
            and providers[b.provider].gpu_class == "rtx4090"
            and (kind is OrderKind.BATCH or b.capacity >= quantity)
            for b in bids
        )
        return
    assert result.quantity + result.unfilled == quantity
    for a in result.allocations:
        assert a.price <= max_price, "awarded above the maximum"
        assert a.quantity <= offered[a.provider].capacity, "more capacity than was bid"
        assert a.price == offered[a.provider].price, "pay-as-bid"
    if kind is OrderKind.LEASE:
        assert len(result.allocations) == 1 and result.allocations[0].quantity == quantity
    # every unit of capacity bid is either awarded or released back to its provider
    handed_back: dict[str, int] = {}
    for r in result.released:
        handed_back[r.provider] = handed_back.get(r.provider, 0) + r.capacity
    won = {a.provider: a.quantity for a in result.allocations}
    for b in bids:
        assert won.get(b.provider, 0) + handed_back.get(b.provider, 0) == b.capacity


# ---------------------------------------------------------------- explanations


def eu_asks(prices: list[float]) -> tuple[list[ProviderView], list[Ask]]:
    views = [view(i) for i in range(len(prices))]
    asks = [
        Ask(v.address, "rtx4090", "eu-west", per_hour(p), 1, valid_until=100.0)
        for v, p in zip(views, prices, strict=True)
    ]
    return views, asks


def test_explain_says_how_far_the_asks_are_from_the_maximum() -> None:
    order = lease(max_per_hour=0.30, gpu_class="rtx4090", regions=("eu-west",))
    views, asks = eu_asks([0.34, 0.40, 0.36])
    result = explain_no_match(order, views, asks=asks, now=1.0)
    assert result.reasons == (
        "3 providers in eu-west have rtx4090; all ask more than 0.3/h; lowest ask 0.34/h",
    )
    assert result.lowest_price == result.suggested_max_price == per_hour(0.34)
    assert dict(result.funnel)["with rtx4090 in eu-west"] == 3
    assert explain_no_match(
        replace(order, max_price=per_hour(0.35)), views, asks, (), 1.0
    ).would_match


def test_explain_names_the_first_requirement_nobody_meets() -> None:
    order = lease(gpu_class="h100-80g", regions=("eu-west",))
    views = [view(1), view(2), view(3, gpu="rtx3090")]
    result = explain_no_match(order, views, now=1.0)
    assert result.reasons == ("no provider of 3 has h100-80g (online: rtx4090: 2, rtx3090: 1)",)
    order = lease(gpu_class="rtx4090", regions=("us-east",))
    result = explain_no_match(order, views, now=1.0)
    assert result.reasons == (
        "2 providers have rtx4090, none in us-east allowed by the order (they are in eu-west: 2)",
    )
    busy = [view(1, free_capacity=0)]
    assert "all are busy" in explain_no_match(lease(), busy, now=1.0).reasons[0]
    assert (
        "none has posted an ask or bid" in explain_no_match(lease(), [view(1)], now=1.0).reasons[0]
    )


def test_explain_counts_capacity_short_of_a_batch() -> None:
    order = batch(max_price=UNIT // 10, tasks=10, gpu_class="rtx4090")
    views = [view(1, free_capacity=3), view(2, free_capacity=3)]
    bids = [Bid("B1", v.address, UNIT // 20, 3, 100.0) for v in views]
    result = explain_no_match(order, views, bids=bids, now=1.0)
    assert result.reasons == ("2 offers at or below 0.1/task cover 6 of 10 tasks",)
    assert result.suggested_max_price is None, "no price fills it: capacity is short"
    assert display_price(lease(), per_hour(0.3)) == "0.3/h"


# ---------------------------------------------------------------- instant spot


def test_instant_spot_fills_from_the_best_ask_and_takes_its_capacity() -> None:
    book = OrderBook()
    _, asks = eu_asks([0.34, 0.28, 0.31])
    for a in asks:
        book.post(a)
    order = lease(max_per_hour=0.30, gpu_class="rtx4090")
    award = book.match_instant(order, now=1.0)
    assert award is not None and award.instant
    assert [(a.provider, a.price) for a in award.allocations] == [("0x0001", per_hour(0.28))]
    assert book.best(OrderKind.LEASE, "rtx4090", "eu-west") == asks[2]
    assert book.match_instant(order, now=1.0) is None, "the only ask under 0.30 was taken"
    book.release("0x0001", OrderKind.LEASE, "rtx4090", 1)
    assert book.match_instant(order, now=1.0) is not None


def test_updating_an_ask_moves_it_in_the_book_and_expiry_removes_it() -> None:
    book = OrderBook()
    book.post(Ask("0xA", "rtx4090", "eu-west", 50, 1, valid_until=10.0))
    book.post(Ask("0xB", "rtx4090", "eu-west", 40, 1, valid_until=100.0))
    book.post(Ask("0xA", "rtx4090", "eu-west", 30, 1, valid_until=10.0))
    assert book.best(OrderKind.LEASE, "rtx4090", "eu-west").provider == "0xa"  # type: ignore[union-attr]
    [summary] = best_asks(book, now=11.0)
    assert (summary.price, summary.providers) == (40, 1)
    book.withdraw("0xB", OrderKind.LEASE, "rtx4090")
    assert best_asks(book, now=11.0) == [] and len(book) == 0
    book.post(Ask("0xC", "RTX4090", "EU-West", 70, 1, valid_until=100.0))
    assert book.best(OrderKind.LEASE, "rtx4090", "eu-west") is not None, "names normalised"


ask_rows = st.lists(
    st.tuples(
        st.integers(1, 30),
        st.integers(1, 100),
        st.integers(1, 5),
        st.sampled_from(["eu-west", "us-east"]),
        st.sampled_from(["rtx4090", "rtx3090", "h100-80g"]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(rows=ask_rows, quantity=st.integers(1, 8), max_price=st.integers(1, 100))
def test_instant_match_equals_a_brute_force_scan(
    rows: list[tuple[int, int, int, str, str]], quantity: int, max_price: int
) -> None:
    book = OrderBook()
    latest: dict[tuple[str, str], Ask] = {}
    for n, price, cap, region, gpu in rows:
        ask = Ask(f"0x{n:04x}", gpu, region, price, cap, 100.0, kind=OrderKind.BATCH)
        book.post(ask)
        latest[(ask.provider, gpu)] = ask
    order = replace(
        batch(gpu_class="rtx4090", regions=("eu-west",)), max_price=max_price, quantity=quantity
    )
    order = replace(order, id="B1")
    before = best_asks(book, now=1.0)
    award = book.match_instant(order, now=1.0)
    pool = sorted(
        (a for a in latest.values() if a.gpu_class == "rtx4090" and a.region == "eu-west"),
        key=lambda a: (a.price, a.provider),
    )
    expected, left = [], quantity
    for a in pool:
        if a.price > max_price or left == 0:
            break
        take = min(a.capacity, left)
        expected.append((a.provider, take, a.price))
        left -= take
    if left > 0:
        assert award is None
        assert best_asks(book, now=1.0) == before, "a failed match changed the book"
    else:
        assert award is not None
        assert [(a.provider, a.quantity, a.price) for a in award.allocations] == expected


# ---------------------------------------------------------------- market data


def test_price_tape_summarises_recent_clearings() -> None:
    tape = PriceTape()
    order = batch(max_price=100, tasks=10)
    providers = {view(i, free_capacity=5).address: view(i, free_capacity=5) for i in (1, 2)}
    bids = [Bid("B1", "0x0001", 40, 5, 100.0), Bid("B1", "0x0002", 60, 5, 100.0)]
    award = clear(order, bids, providers, now=31.0)
    assert isinstance(award, Award)
    tape.record(award)
    [s] = tape.summary(now=40.0)
    assert (s.gpu_class, s.region, s.low, s.high, s.vwap, s.quantity) == (
        "rtx4090",
        "eu-west",
        40,
        60,
        50,
        10,
    )
    assert tape.summary(now=31.0 + 7200) == []


def test_market_core_imports_nothing_outside_the_standard_library_and_core() -> None:
    code = (
        "import sys, gpudepin.core.market, gpudepin.core.orderbook, gpudepin.core.leases\n"
        "heavy = {'sqlalchemy', 'httpx', 'fastapi', 'web3', 'asyncio', 'subprocess', 'numpy'}\n"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_requirements_read_from_json_the_same_for_coordinator_and_agents() -> None:
    from gpudepin.core.errors import InvalidInput
    from gpudepin.core.hardware import Tier
    from gpudepin.core.market import Requirements, requirements_of

    raw = {"gpu_class": "rtx4090", "min_vram_gb": "16", "tier": "enterprise",
           "regions": ["eu-west"], "deny_regions": ["uk-south"]}  # fmt: skip
    assert requirements_of(raw) == Requirements(
        gpu_class="rtx4090",
        min_vram_gb=16.0,
        tier=Tier.ENTERPRISE,
        regions=("eu-west",),
        deny_regions=frozenset({"uk-south"}),
    )
    assert requirements_of({}) == Requirements()
    for bad in ({"tier": "gold"}, {"regions": "eu-west"}, {"min_vram_gb": "lots"}):
        with pytest.raises(InvalidInput, match="requirements"):
            requirements_of(bad)
