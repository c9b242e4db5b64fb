"""The agent's side of the spot market: bid on open orders, post standing asks, run leases.

Every ``poll_s`` the engine asks the coordinator for its market work: the open orders this
machine's hardware satisfies, the outcome of its bids, and the leases awarded to it. It
prices each order with its strategy (``gpudepin.provider.strategy``), which sees the exact
order, signs the bid and posts it. Capacity a bid reserves is counted until the bid is
decided; a lost bid releases it. A lease is started at once and held: while it lasts the
agent takes no batch tasks and sends a signed usage receipt with the cumulative seconds
delivered on every pass, so billing follows delivery and stops when the agent does.

What runs on a lease is named by its ``workload`` ("" = bare GPU time). ``LEASE_RUNNERS``
maps a workload name to a ``LeaseRunner``; the default holds the GPU and runs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from gpudepin.client import Client
from gpudepin.core.errors import GpudepinError, InvalidInput
from gpudepin.core.market import Order, OrderKind, ProviderView, requirements_of
from gpudepin.provider.strategy import Strategy, load_strategy, make_bid

log = logging.getLogger("gpudepin.market")

CONFIG_NAME = "provider.toml"
# CLI flag -> CostStrategy setting
STRATEGY_FLAGS = {
    "electricity_price": "electricity_usd_per_kwh",
    "margin": "margin",
    "token_price": "token_usd_price",
}


@dataclass
class MarketConfig:
    """The provider's market settings (``[strategy]`` and ``[market]`` in provider.toml)."""

    strategy: str = "cost"
    settings: dict[str, Any] = field(default_factory=dict)
    asks: bool = False  # post standing asks for instant spot
    batch_slots: int = 8  # task units this machine commits to over all its open batch bids
    poll_s: float = 1.0
    ask_valid_s: float = 60.0


def load_market_config(path: Path, overrides: dict[str, Any] | None = None) -> MarketConfig:
    """Read ``path`` (missing: defaults) and apply CLI ``overrides`` (None values skipped):
    ``strategy``, ``asks``, ``batch_slots`` and the ``STRATEGY_FLAGS`` settings."""
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path}: {exc}", hint="Fix the provider config file.") from exc
    strat = dict(raw.get("strategy", {}))
    section = dict(raw.get("market", {}))
    cfg = MarketConfig(
        strategy=str(strat.pop("class", "cost")),
        settings=strat,
        asks=bool(section.get("asks", False)),
        batch_slots=int(section.get("batch_slots", 8)),
        poll_s=float(section.get("poll_s", 1.0)),
        ask_valid_s=float(section.get("ask_valid_s", 60.0)),
    )
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key in STRATEGY_FLAGS:
            cfg.settings[STRATEGY_FLAGS[key]] = value
        elif key in ("strategy", "asks", "batch_slots", "poll_s"):
            setattr(cfg, key, value)
        else:
            raise InvalidInput(f"unknown market setting {key!r}")
    return cfg


class LeaseRunner(Protocol):
    """What an agent runs on a lease; ``start`` returns at once, ``stop`` ends it."""

    def start(self, lease: dict[str, Any]) -> None: ...

    def stop(self, lease_id: str) -> None: ...


class HoldRunner:
    """Bare GPU time: the lease holds the GPU (no batch tasks meanwhile), nothing runs."""

    def start(self, lease: dict[str, Any]) -> None:
        log.info("holding the GPU for lease %s (%s s)", lease["id"], lease["duration_s"])

    def stop(self, lease_id: str) -> None:
        log.info("lease %s ended; GPU released", lease_id)


LEASE_RUNNERS: dict[str, Callable[[], LeaseRunner]] = {"": HoldRunner}


def order_from_json(o: dict[str, Any]) -> Order:
    return Order(
        id=o["id"],
        kind=OrderKind(o["kind"]),
        buyer=o["buyer"],
        requirements=requirements_of(o["requirements"]),
        max_price=int(o["max_price"]),
        quantity=int(o["quantity"]),
        created_at=float(o["created_at"]),
        duration_s=int(o["duration_s"]),
        bid_window_s=float(o["bid_window_s"]),
        task_seconds=float(o["task_seconds"]),
    )


class MarketEngine:
    """One provider's bidding and lease running; ``step`` does one pass."""

    def __init__(
        self,
        client: Client,
        hardware: dict[str, Any],
        region: str,
        config: MarketConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.hardware = hardware
        self.region = region
        self.config = config
        self.clock = clock
        self.strategy: Strategy = load_strategy(config.strategy, config.settings)
        self.gpus = max(int(hardware.get("gpu_count") or 0), 1)
        self.reserved: dict[str, int] = {}  # order id -> task units an open bid reserves
        self.running: dict[str, tuple[float, LeaseRunner]] = {}  # lease id -> (t0, runner)
        self.hosted: set[str] = set()  # leases another runner serves; they hold GPUs too
        self._asked_at = 0.0
        self._since = 0.0  # newest order or lease seen: the long poll waits for newer

    @property
    def holding(self) -> bool:
        """Whether a lease holds this machine's GPUs (no batch work meanwhile)."""
        return bool(self.running or self.hosted)

    def view(self, kind: OrderKind) -> ProviderView:
        leased = len(self.running) + len(self.hosted)
        if kind is OrderKind.LEASE:
            free = self.gpus - leased
        else:
            free = 0 if leased else self.config.batch_slots - sum(self.reserved.values())
        return ProviderView.of(
            self.client.address, self.hardware.get("gpu_class", "cpu"), self.region, max(free, 0)
        )

    def utilization(self) -> float:
        if self.running:
            return min(len(self.running) / self.gpus, 1.0)
        return min(sum(self.reserved.values()) / max(self.config.batch_slots, 1), 1.0)

    def step(self) -> None:
        work = self.client.market_work(self.config.poll_s, self._since)
        self._since = max(
            [self._since]
            + [float(o["created_at"]) for o in work["orders"]]
            + [float(x["awarded_at"]) for x in work["leases"]]
        )
        for b in work["bids"]:
            if b["state"] != "open":
                self.reserved.pop(b["order_id"], None)  # decided: won work is claimed, lost freed
        self._run_leases(work["leases"])
        for raw in work["orders"]:
            self._bid(order_from_json(raw))
        if self.config.asks and self.clock() - self._asked_at >= self.config.ask_valid_s / 3:
            self._post_asks()

    def _bid(self, order: Order) -> None:
        now = self.clock()
        bid = make_bid(self.strategy, order, self.view(order.kind), self.utilization(), now)
        if bid is None:
            return
        try:
            self.client.place_bid(order.id, bid.price, bid.capacity, bid.valid_until)
        except GpudepinError as exc:
            log.info("bid on %s refused: %s", order.id, exc)
            return
        if order.kind is OrderKind.BATCH:
            self.reserved[order.id] = bid.capacity
        log.info("bid %s on order %s (%s x%d)", bid.price, order.id, order.kind, bid.capacity)

    def _post_asks(self) -> None:
        from gpudepin.provider.strategy import CostStrategy

        if not isinstance(self.strategy, CostStrategy):
            return  # a plug-in strategy prices orders one by one; asks need a standing price
        now = self.clock()
        for kind in OrderKind:
            ask = self.strategy.ask(self.view(kind), kind, self.utilization(), now)
            try:
                self.client.post_ask(kind.value, ask.price, ask.capacity, ask.valid_until)
            except GpudepinError as exc:
                log.info("ask refused: %s", exc)
        self._asked_at = now

    def _run_leases(self, leases: list[dict[str, Any]]) -> None:
        live = {lease["id"]: lease for lease in leases}
        for lease_id in [i for i in self.running if i not in live]:
            _, runner = self.running.pop(lease_id)
            runner.stop(lease_id)
        self.hosted = {i for i, lease in live.items() if lease["workload"] not in LEASE_RUNNERS}
        for lease in leases:
            lease_id = lease["id"]
            if lease_id in self.hosted:
                continue  # its workload's own runner (provider.hosting) starts and bills it
            if lease_id not in self.running:
                if lease["state"] == "pending":
                    self.client.start_lease(lease_id)
                    started = time.monotonic()
                else:  # an agent restarted while its lease ran: count from the start
                    started = time.monotonic() - max(self.clock() - lease["started_at"], 0)
                runner = LEASE_RUNNERS[lease["workload"]]()
                runner.start(lease)
                self.running[lease_id] = (started, runner)
                continue
            delivered = int(time.monotonic() - self.running[lease_id][0])
            try:
                self.client.lease_receipt(lease_id, delivered, self.clock())
            except GpudepinError as exc:
                log.info("receipt for %s refused: %s", lease_id, exc)


def run_market(engine: MarketEngine, stop: threading.Event) -> None:
    """Run ``engine`` until ``stop`` is set; a failed pass is logged and retried."""
    while not stop.is_set():
        try:
            engine.step()
        except GpudepinError as exc:
            log.info("market pass failed: %s", exc)
            stop.wait(engine.config.poll_s)


def start_market(engine: MarketEngine, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=run_market, args=(engine, stop), name="market", daemon=True)
    thread.start()
    return thread
