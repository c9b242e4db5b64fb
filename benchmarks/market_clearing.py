"""Clear many orders against many providers with the pure market core on one core.

Two clearing paths are timed, order by order:

* instant spot: ``OrderBook.match_instant`` against standing asks from every provider
  (the path whose cost could grow with the number of providers), with the capacity taken
  released again after each order so the book stays the same size;
* sealed-bid auction: ``clear`` over the bids one order received (``--bids`` per order,
  from eligible providers picked before the clock starts).

Then the instant path is rerun with 1,000, 10,000 and 100,000 providers to show how the
time per clearing grows. Prices are log-normal around the catalog's median price per class
(market-facts.md: prices vary widely between providers), so some orders find no ask.

    python3 benchmarks/market_clearing.py            # 100,000 orders, 10,000 providers
    python3 benchmarks/market_clearing.py --orders 20000 --scales 1000,10000
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import time
from dataclasses import dataclass

from gpudepin.core.hardware import CATALOG, Tier
from gpudepin.core.market import (
    Ask,
    Award,
    Bid,
    Order,
    OrderKind,
    ProviderView,
    Requirements,
    clear,
    validate_order,
)
from gpudepin.core.money import UNIT
from gpudepin.core.orderbook import OrderBook

REGIONS = ("eu-west", "eu-central", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af")
CLASS_WEIGHTS = {
    "rtx3090": 30,
    "rtx4090": 35,
    "rtx5090": 10,
    "a100-80g": 12,
    "h100-80g": 8,
    "cpu": 5,
}
TASK_SECONDS = 60  # a batch task is priced as a minute of its GPU


@dataclass
class Timings:
    ns: list[int]
    wall_s: float
    matched: int

    def line(self, label: str) -> str:
        ordered = sorted(self.ns)
        p50 = ordered[len(ordered) // 2] / 1e3
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e3
        mean = statistics.fmean(ordered) / 1e3
        rate = len(ordered) / self.wall_s
        return (
            f"{label:<34} {len(ordered):>8,} orders  {rate:>10,.0f} orders/s  "
            f"mean {mean:7.1f} us  p50 {p50:7.1f} us  p99 {p99:7.1f} us  "
            f"matched {self.matched / len(ordered):6.1%}"
        )


def per_second(usd_per_hour: float) -> int:
    return int(usd_per_hour * UNIT / 3600)


def make_providers(n: int, rng: random.Random) -> list[ProviderView]:
    names, weights = zip(*CLASS_WEIGHTS.items(), strict=True)
    out = []
    for i in range(n):
        gpu = rng.choices(names, weights)[0]
        tier = CATALOG[gpu].tier if rng.random() < 0.8 else Tier.CONSUMER
        out.append(
            ProviderView.of(
                f"0x{i:040x}",
                gpu,
                rng.choice(REGIONS),
                free_capacity=rng.choice((1, 1, 2, 4, 8)),
                reputation=rng.random(),
                reliability=rng.random(),
                tier=tier,
            )
        )
    return out


def ask_price(gpu: str, rng: random.Random) -> float:
    return CATALOG[gpu].median_usd_per_hour * math.exp(rng.gauss(0.0, 0.35))


def fill_book(providers: list[ProviderView], rng: random.Random) -> OrderBook:
    book = OrderBook()
    for p in providers:
        usd = ask_price(p.gpu_class, rng)
        for kind, price in (
            (OrderKind.LEASE, per_second(usd)),
            (OrderKind.BATCH, per_second(usd) * TASK_SECONDS),
        ):
            book.post(
                Ask(
                    p.address,
                    p.gpu_class,
                    p.region,
                    max(price, 1),
                    p.free_capacity,
                    valid_until=1e12,
                    kind=kind,
                    tier=p.tier,
                )
            )
    return book


def make_orders(n: int, rng: random.Random) -> list[Order]:
    names, weights = zip(*CLASS_WEIGHTS.items(), strict=True)
    orders = []
    for i in range(n):
        gpu = rng.choices(names, weights)[0]
        shape = rng.random()
        if shape < 0.6:  # a class in one or two regions
            req = Requirements(
                gpu_class=gpu, regions=tuple(rng.sample(REGIONS, rng.choice((1, 2))))
            )
        elif shape < 0.8:  # a class anywhere
            req = Requirements(gpu_class=gpu)
        else:  # enough memory, anywhere but one region
            req = Requirements(
                min_vram_gb=rng.choice((24, 32, 80)), deny_regions=frozenset({rng.choice(REGIONS)})
            )
        usd = (CATALOG[gpu].median_usd_per_hour if req.gpu_class else 1.0) * math.exp(
            rng.gauss(0.0, 0.4)
        )
        if rng.random() < 0.5:
            order = Order(
                f"o{i}",
                OrderKind.LEASE,
                "0xbuyer",
                req,
                max(per_second(usd), 1),
                rng.choice((1, 1, 1, 2)),
                created_at=0.0,
                duration_s=rng.choice((600, 3600, 7200)),
            )
        else:
            order = Order(
                f"o{i}",
                OrderKind.BATCH,
                "0xbuyer",
                req,
                max(per_second(usd) * TASK_SECONDS, 1),
                rng.randint(1, 8),
                created_at=0.0,
                task_seconds=TASK_SECONDS,
            )
        orders.append(validate_order(order))
    return orders


def run_instant(book: OrderBook, orders: list[Order]) -> Timings:
    ns, matched = [], 0
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for order in orders:
        t0 = clock()
        award = book.match_instant(order, now=1.0, allow_partial=order.kind is OrderKind.BATCH)
        ns.append(clock() - t0)
        if award is not None:
            matched += 1
            # the work finishes: the capacity goes back, so the book keeps its size
            for a in award.allocations:
                book.release(a.provider, order.kind, a.gpu_class, a.quantity)
    return Timings(ns, time.perf_counter() - start, matched)


def auction_inputs(
    orders: list[Order], providers: list[ProviderView], per_order: int, rng: random.Random
) -> list[tuple[Order, list[Bid], dict[str, ProviderView]]]:
    """The bids each order received, from providers of a fitting class (set up untimed)."""
    by_class: dict[str, list[ProviderView]] = {}
    for p in providers:
        by_class.setdefault(p.gpu_class, []).append(p)
    out = []
    for order in orders:
        gpu = order.requirements.gpu_class or "a100-80g"
        pool = rng.sample(by_class[gpu], min(per_order, len(by_class[gpu])))
        bids = [
            Bid(
                order.id,
                p.address,
                max(int(order.max_price * math.exp(rng.gauss(-0.1, 0.3))), 1),
                order.quantity if order.kind is OrderKind.LEASE else min(p.free_capacity, 8),
                valid_until=1e12,
            )
            for p in pool
        ]
        out.append((order, bids, {p.address: p for p in pool}))
    return out


def run_auctions(inputs: list[tuple[Order, list[Bid], dict[str, ProviderView]]]) -> Timings:
    ns, matched = [], 0
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for order, bids, providers in inputs:
        t0 = clock()
        result = clear(order, bids, providers, now=1e6)
        ns.append(clock() - t0)
        matched += isinstance(result, Award)
    return Timings(ns, time.perf_counter() - start, matched)


def settle_gc(freeze: bool) -> None:
    gc.collect()
    if freeze:
        gc.unfreeze()
        gc.freeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--providers", type=int, default=10_000)
    parser.add_argument("--bids", type=int, default=16, help="bids per auctioned order")
    parser.add_argument("--scales", default="1000,10000,100000")
    parser.add_argument("--scale-orders", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--freeze-gc",
        action="store_true",
        help="move the built book out of the cyclic GC's reach (gc.freeze), as a long-lived "
        "coordinator would; without it, full collections scan every ask and grow with n",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)

    providers = make_providers(args.providers, rng)
    book = fill_book(providers, rng)
    orders = make_orders(args.orders, rng)
    settle_gc(args.freeze_gc)
    gc_note = ", GC frozen after set-up" if args.freeze_gc else ""
    print(f"{args.orders:,} orders against {args.providers:,} providers, one core{gc_note}\n")
    print(run_instant(book, orders).line("instant spot (order book)"))
    inputs = auction_inputs(orders, providers, args.bids, rng)
    print(run_auctions(inputs).line(f"sealed-bid auction ({args.bids} bids)"))

    print(f"\ngrowth of the instant path with providers ({args.scale_orders:,} orders each):")
    scale_orders = make_orders(args.scale_orders, random.Random(args.seed + 1))
    base = None
    for n in (int(s) for s in args.scales.split(",")):
        srng = random.Random(args.seed + n)
        scaled = fill_book(make_providers(n, srng), srng)
        settle_gc(args.freeze_gc)
        t = run_instant(scaled, scale_orders)
        del scaled
        mean = statistics.fmean(t.ns)
        base = base or mean
        print(t.line(f"{n:>7,} providers") + f"  x{mean / base:4.2f} vs first")


if __name__ == "__main__":
    main()
