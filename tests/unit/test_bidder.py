"""The agent's bid engine: config file and flags, bids priced by the strategy on the exact
order, capacity released when a bid loses, leases started, held and receipted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpudepin.core.errors import InvalidInput
from gpudepin.core.market import OrderKind
from gpudepin.core.money import UNIT
from gpudepin.provider.bidder import (
    MarketConfig,
    MarketEngine,
    load_market_config,
    order_from_json,
)
from gpudepin.provider.strategy import CostStrategy

ADDR = "0x" + "ab" * 20


class FakeClient:
    """Scripted market work; records what the engine sends."""

    address = ADDR

    def __init__(self) -> None:
        self.work: dict[str, Any] = {"orders": [], "bids": [], "leases": []}
        self.bids: list[tuple[str, int, int]] = []
        self.started: list[str] = []
        self.receipts: list[tuple[str, int]] = []

    def market_work(self, wait: float = 0.0, since: float = 0.0) -> dict[str, Any]:
        return self.work

    def place_bid(self, order_id: str, price: int, capacity: int, valid_until: float) -> None:
        self.bids.append((order_id, price, capacity))

    def start_lease(self, lease_id: str) -> dict[str, Any]:
        self.started.append(lease_id)
        return {}

    def lease_receipt(self, lease_id: str, cumulative: int, at: float) -> dict[str, Any]:
        self.receipts.append((lease_id, cumulative))
        return {}


def order(oid: str, kind: str = "batch", quantity: int = 4, max_price: int = UNIT) -> dict:
    return {
        "id": oid,
        "kind": kind,
        "buyer": "0x" + "cd" * 20,
        "requirements": {"gpu_class": "cpu", "regions": ["eu-west"]},
        "max_price": str(max_price),
        "quantity": quantity,
        "duration_s": 3600 if kind == "lease" else 0,
        "task_seconds": 0.0,
        "created_at": 100.0,
        "bid_window_s": 2.0,
    }


def engine(client: FakeClient, **settings: Any) -> MarketEngine:
    cfg = MarketConfig(settings=settings, batch_slots=6)
    return MarketEngine(client, {"gpu_class": "cpu"}, "eu-west", cfg, clock=lambda: 101.0)  # type: ignore[arg-type]


def test_config_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "provider.toml"
    path.write_text(
        '[strategy]\nclass = "cost"\nelectricity_usd_per_kwh = 0.2\nmargin = 0.5\n'
        "[market]\nasks = true\nbatch_slots = 3\n"
    )
    cfg = load_market_config(path, {"electricity_price": 0.1, "asks": None})
    assert cfg.settings == {"electricity_usd_per_kwh": 0.1, "margin": 0.5}
    assert cfg.asks is True and cfg.batch_slots == 3
    assert load_market_config(tmp_path / "missing.toml").strategy == "cost"
    path.write_text("[strategy\n")
    with pytest.raises(InvalidInput, match=r"provider\.toml"):
        load_market_config(path)


def test_bids_at_the_strategys_price_and_releases_lost_capacity() -> None:
    client = FakeClient()
    eng = engine(client, electricity_usd_per_kwh=0.1)
    client.work["orders"] = [order("j1"), order("j2")]
    eng.step()
    first = order_from_json(order("j1"))
    expected = CostStrategy(electricity_usd_per_kwh=0.1).price(first, eng.view(first.kind), 0.0)
    assert client.bids[0] == ("j1", expected, 4)
    assert client.bids[1][0] == "j2" and client.bids[1][2] == 2  # 6 slots, 4 reserved
    assert client.bids[1][1] > expected  # busier machine, dearer bid
    client.work = {"orders": [], "bids": [{"order_id": "j1", "state": "lost"}], "leases": []}
    eng.step()
    assert eng.reserved == {"j2": 2}


def test_an_order_priced_under_cost_gets_no_bid() -> None:
    client = FakeClient()
    client.work["orders"] = [order("j1", max_price=1)]
    engine(client).step()
    assert client.bids == []


def test_a_lease_is_started_held_and_receipted() -> None:
    client = FakeClient()
    eng = engine(client)
    lease = {"id": "l1", "state": "pending", "workload": "", "duration_s": 60, "awarded_at": 1.0}
    client.work["leases"] = [lease]
    eng.step()
    assert client.started == ["l1"] and eng.holding
    assert eng.view(OrderKind.BATCH).free_capacity == 0
    client.work["leases"] = [{**lease, "state": "active", "started_at": 100.0}]
    eng.step()
    assert client.receipts == [("l1", 0)]
    client.work["leases"] = []
    eng.step()
    assert not eng.holding
