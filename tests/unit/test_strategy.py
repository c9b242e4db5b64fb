"""The provider's bid engine: prices from cost, never below the floor, and pluggable."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudepin.core.errors import InvalidInput
from gpudepin.core.market import Order, OrderKind, ProviderView, Requirements, check_bid
from gpudepin.core.money import UNIT
from gpudepin.provider.strategy import CostStrategy, load_strategy, make_bid

GPU = ProviderView.of("0xprov", "rtx4090", "eu-west", free_capacity=4)


def lease(duration_s: int = 7200, max_price: int = UNIT, gpus: int = 1) -> Order:
    return Order("L1", OrderKind.LEASE, "0xb", Requirements(), max_price, gpus, 0.0, duration_s)


def usd_per_hour(price_per_second: int, token_usd: float = 1.0) -> float:
    return float(Fraction(price_per_second * 3600, UNIT) * Fraction(token_usd))


def test_floor_is_wall_power_times_electricity_plus_margin() -> None:
    s = CostStrategy(electricity_usd_per_kwh=0.16, margin=0.25)
    # rtx4090 draws 600 W at the wall under load (hardware catalog)
    assert s.floor_usd_per_hour("rtx4090") == pytest.approx(0.6 * 0.16 * 1.25)
    price = s.price(lease(), GPU, utilization=0.0)
    assert price is not None
    assert usd_per_hour(price) == pytest.approx(0.12, abs=1e-12)


@given(
    utilization=st.floats(-1.0, 2.0),
    elec=st.floats(0.01, 1.0),
    margin=st.floats(0.0, 2.0),
    token=st.floats(0.01, 100.0),
)
def test_price_never_falls_below_the_floor(
    utilization: float, elec: float, margin: float, token: float
) -> None:
    s = CostStrategy(electricity_usd_per_kwh=elec, margin=margin, token_usd_price=token)
    price = s.price(lease(max_price=10**30), GPU, utilization)
    assert price is not None
    assert price * 3600 * Fraction(token) >= Fraction(s.floor_usd_per_hour("rtx4090")) * UNIT


def test_price_rises_with_utilization_and_sees_the_order() -> None:
    s = CostStrategy()
    idle, busy = s.price(lease(), GPU, 0.0), s.price(lease(), GPU, 1.0)
    assert idle is not None and busy is not None
    assert busy == pytest.approx(2 * idle, rel=1e-9), "utilization_markup 1.0 doubles at full"
    short = s.price(lease(duration_s=600), GPU, 0.0)
    assert short is not None and short > idle, "a short lease pays for its set-up"
    h100 = ProviderView.of("0xprov", "h100-80g", "eu-west")
    dear = s.price(lease(), h100, 0.0)
    assert dear is not None and dear > idle, "priced for the GPU chosen"


def test_token_price_converts_usd_to_tokens() -> None:
    one, two = CostStrategy(token_usd_price=1.0), CostStrategy(token_usd_price=2.0)
    a, b = one.price(lease(), GPU, 0.0), two.price(lease(), GPU, 0.0)
    assert a is not None and b is not None
    assert abs(a - 2 * b) <= 2


def test_batch_tasks_are_priced_by_their_estimated_seconds() -> None:
    s = CostStrategy()
    order = Order("B1", OrderKind.BATCH, "0xb", Requirements(), UNIT, 10, 0.0, task_seconds=120.0)
    per_task = s.price(order, GPU, 0.0)
    per_second = s.price(lease(), GPU, 0.0)
    assert per_task is not None and per_second is not None
    assert abs(per_task - 120 * per_second) <= 120


def test_make_bid_stays_out_above_the_maximum_or_when_ineligible() -> None:
    s = CostStrategy()
    assert make_bid(s, lease(max_price=1), GPU, 0.0, now=0.0) is None
    assert make_bid(s, lease(gpus=8), GPU, 0.0, now=0.0) is None, "only 4 GPUs free"
    bid = make_bid(s, lease(gpus=2), GPU, 0.0, now=1.0)
    assert bid is not None and bid.capacity == 2
    check_bid(lease(gpus=2), bid, GPU, [], now=1.0)  # the market accepts what it makes


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(InvalidInput, match="margin"):
        CostStrategy(margin=-0.1)
    with pytest.raises(InvalidInput, match="token_usd_price"):
        CostStrategy(token_usd_price=0)


PLUGIN = """
class Flat:
    def __init__(self, price):
        self.flat = price

    def price(self, order, gpu, utilization):
        return self.flat if gpu.gpu_class == "rtx4090" else None


class NoPrice:
    pass
"""


def test_a_provider_plugs_in_its_own_strategy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_pricing.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    flat = load_strategy("my_pricing:Flat", {"price": 1234})
    assert flat.price(lease(), GPU, 0.5) == 1234
    bid = make_bid(flat, lease(), GPU, 0.5, now=0.0)
    assert bid is not None and bid.price == 1234
    assert isinstance(load_strategy("cost", {"margin": 0.5}), CostStrategy)
    with pytest.raises(InvalidInput, match="not of the form"):
        load_strategy("my_pricing.Flat")
    with pytest.raises(InvalidInput, match="cannot import"):
        load_strategy("no_such_module_here:Flat")
    with pytest.raises(InvalidInput, match="has no Nope"):
        load_strategy("my_pricing:Nope")
    with pytest.raises(InvalidInput, match="does not take these settings"):
        load_strategy("my_pricing:Flat", {"colour": "red"})
    with pytest.raises(InvalidInput, match="no price"):
        load_strategy("my_pricing:NoPrice")
