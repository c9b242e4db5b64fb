"""Standing asks and instant spot matching: an order at or above the best ask clears at once.

Asks sit in buckets keyed by (order kind, GPU class, tier, region, jurisdiction); each bucket
is a binary heap of ``(price, provider, seq)`` with lazy deletion, so posting, replacing or
withdrawing an ask costs O(log n) and the best ask of a bucket is found in O(log n)
amortized. Matching an order looks only at the buckets its requirements allow (a handful:
classes by regions, never the providers one by one) and takes asks cheapest first, ties
broken by provider address, so the same book and order always give the same award.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, replace

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import Tier, gpu_class
from gpudepin.core.market import (
    Allocation,
    Ask,
    Award,
    Order,
    OrderKind,
    matching_classes,
    region_allowed,
    tier_allows,
)

BucketKey = tuple[OrderKind, str, Tier, str, str]  # kind, class, tier, region, jurisdiction
AskKey = tuple[str, OrderKind, str]  # provider, kind, class
_Entry = tuple[int, str, int]  # price, provider, seq


@dataclass(frozen=True)
class _Live:
    ask: Ask
    seq: int
    bucket: BucketKey


class _Bucket:
    __slots__ = ("capacity", "count", "heap")

    def __init__(self) -> None:
        self.heap: list[_Entry] = []
        self.count = 0
        self.capacity = 0


@dataclass(frozen=True)
class BestAsk:
    kind: OrderKind
    gpu_class: str
    region: str
    price: int
    providers: int
    capacity: int


class OrderBook:
    """Standing asks from providers, one per (provider, kind, GPU class)."""

    def __init__(self) -> None:
        self._live: dict[AskKey, _Live] = {}
        self._buckets: dict[BucketKey, _Bucket] = {}
        # (kind, class) -> region -> bucket keys, so a match visits only allowed buckets
        self._index: dict[tuple[OrderKind, str], dict[str, list[BucketKey]]] = {}
        self._expiry: list[tuple[float, int, AskKey]] = []
        # asks whose whole capacity awards took, so ``release`` can put them back
        self._spent: dict[AskKey, Ask] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def post(self, ask: Ask) -> None:
        """Place or replace ``ask`` in O(log n); a capacity of 0 withdraws it."""
        if ask.price <= 0:
            raise InvalidInput(f"price: must be positive, got {ask.price}", field="price")
        if ask.capacity < 0:
            raise InvalidInput(f"capacity: must not be negative, got {ask.capacity}")
        cls = gpu_class(ask.gpu_class).name
        ask = replace(ask, provider=ask.provider.lower(), gpu_class=cls, region=ask.region.lower())
        key = (ask.provider, ask.kind, cls)
        self._drop(key)
        self._spent.pop(key, None)
        if ask.capacity == 0:
            return
        bk: BucketKey = (ask.kind, cls, ask.tier, ask.region, ask.jurisdiction)
        bucket = self._buckets.get(bk)
        if bucket is None:
            bucket = self._buckets[bk] = _Bucket()
            regions = self._index.setdefault((ask.kind, cls), {})
            regions.setdefault(ask.region, []).append(bk)
        self._seq += 1
        self._live[key] = _Live(ask, self._seq, bk)
        heapq.heappush(bucket.heap, (ask.price, ask.provider, self._seq))
        heapq.heappush(self._expiry, (ask.valid_until, self._seq, key))
        bucket.count += 1
        bucket.capacity += ask.capacity
        if len(bucket.heap) > 2 * bucket.count + 32:
            bucket.heap = [e for e in bucket.heap if not self._stale(bk, e)]
            heapq.heapify(bucket.heap)
        if len(self._expiry) > 2 * len(self._live) + 32:
            self._expiry = [e for e in self._expiry if self._is_current(e[2], e[1])]
            heapq.heapify(self._expiry)

    def withdraw(self, provider: str, kind: OrderKind, gpu: str) -> None:
        """Take a provider's ask for ``gpu`` off the book (no-op if it has none)."""
        key = (provider.lower(), kind, gpu.lower())
        self._drop(key)
        self._spent.pop(key, None)

    def release(self, provider: str, kind: OrderKind, gpu: str, capacity: int) -> None:
        """Give back capacity an award took, when the work is done or the award lapsed; a
        no-op if the provider withdrew or replaced the ask meanwhile."""
        key = (provider.lower(), kind, gpu.lower())
        live = self._live.get(key)
        ask = live.ask if live is not None else self._spent.get(key)
        if ask is not None and capacity > 0:
            self.post(replace(ask, capacity=ask.capacity + capacity))

    def get(self, provider: str, kind: OrderKind, gpu: str) -> Ask | None:
        live = self._live.get((provider.lower(), kind, gpu.lower()))
        return None if live is None else live.ask

    def asks(self, now: float) -> Iterator[Ask]:
        """Every live ask, sorted by provider (for quotes and explanations; O(n))."""
        for key in sorted(self._live):
            ask = self._live[key].ask
            if ask.valid_until >= now:
                yield ask

    def expire(self, now: float) -> int:
        """Drop asks whose validity ended before ``now``; return how many."""
        dropped = 0
        while self._expiry and self._expiry[0][0] < now:
            _, seq, key = heapq.heappop(self._expiry)
            if self._is_current(key, seq):
                self._drop(key)
                dropped += 1
        return dropped

    def best(self, kind: OrderKind, gpu: str, region: str) -> Ask | None:
        """The cheapest ask for ``gpu`` in ``region`` over all tiers and jurisdictions."""
        found: Ask | None = None
        for bk in self._index.get((kind, gpu.lower()), {}).get(region.lower(), ()):
            head = self._head(bk)
            if head is not None and (found is None or head[:2] < (found.price, found.provider)):
                found = self._live[(head[1], kind, bk[1])].ask
        return found

    def match_instant(
        self, order: Order, now: float, *, allow_partial: bool = False
    ) -> Award | None:
        """Fill ``order`` at once from asks at or below its maximum, cheapest first, each
        winner paid its ask; the capacity taken leaves the book (``release`` returns it).
        A lease goes whole to one ask with enough GPUs. Returns None, and leaves the book
        as it was, when the asks cannot fill the order (or any of it, with
        ``allow_partial``): the order then goes to the auction."""
        self.expire(now)
        heads: list[tuple[int, str, int, BucketKey]] = []
        for bk in self._candidates(order):
            head = self._head(bk)
            if head is not None:
                heads.append((*head, bk))
        heapq.heapify(heads)
        popped: list[tuple[BucketKey, _Entry]] = []
        taken: list[tuple[_Live, int]] = []
        skipped: list[tuple[BucketKey, _Entry]] = []
        remaining = order.quantity
        while heads and remaining > 0 and heads[0][0] <= order.max_price:
            price, provider, seq, bk = heapq.heappop(heads)
            heapq.heappop(self._buckets[bk].heap)
            popped.append((bk, (price, provider, seq)))
            live = self._live[(provider, bk[0], bk[1])]
            if order.kind is OrderKind.LEASE and live.ask.capacity < order.quantity:
                skipped.append((bk, (price, provider, seq)))
            else:
                take = min(live.ask.capacity, remaining)
                taken.append((live, take))
                remaining -= take
            head = self._head(bk)
            if head is not None:
                heapq.heappush(heads, (*head, bk))
        if not taken or (remaining > 0 and not allow_partial):
            for bk, entry in popped:
                heapq.heappush(self._buckets[bk].heap, entry)
            return None
        for bk, entry in skipped:
            heapq.heappush(self._buckets[bk].heap, entry)
        allocations = []
        for live, take in taken:
            ask = live.ask
            allocations.append(Allocation(ask.provider, take, ask.price, ask.gpu_class, ask.region))
            self.post(replace(ask, capacity=ask.capacity - take))
            if take == ask.capacity:
                self._spent[(ask.provider, ask.kind, ask.gpu_class)] = replace(ask, capacity=0)
        return Award(
            order.id,
            order.kind,
            tuple(allocations),
            clearing_price=max(a.price for a in allocations),
            cleared_at=now,
            unfilled=remaining,
            instant=True,
            duration_s=order.duration_s,
        )

    def best_asks(self, now: float) -> list[BestAsk]:
        """See the module function ``best_asks``."""
        self.expire(now)
        merged: dict[tuple[OrderKind, str, str], BestAsk] = {}
        for (kind, cls), by_region in self._index.items():
            for region, keys in by_region.items():
                for bk in keys:
                    head = self._head(bk)
                    if head is None:
                        continue
                    bucket = self._buckets[bk]
                    prev = merged.get((kind, cls, region))
                    price, providers, capacity = head[0], bucket.count, bucket.capacity
                    if prev is not None:
                        price = min(price, prev.price)
                        providers += prev.providers
                        capacity += prev.capacity
                    merged[(kind, cls, region)] = BestAsk(
                        kind, cls, region, price, providers, capacity
                    )
        return [merged[k] for k in sorted(merged)]

    # -------------------------------------------------------------- internals

    def _candidates(self, order: Order) -> list[BucketKey]:
        req = order.requirements
        out: list[BucketKey] = []
        for cls in matching_classes(req):
            by_region = self._index.get((order.kind, cls.name))
            if not by_region:
                continue
            if req.regions is None:
                keys = [bk for region in by_region.values() for bk in region]
            else:
                keys = [bk for r in req.regions for bk in by_region.get(r, ())]
            out.extend(
                bk
                for bk in keys
                if tier_allows(req.tier, bk[2]) and region_allowed(req, bk[3], bk[4])
            )
        return out

    def _is_current(self, key: AskKey, seq: int) -> bool:
        live = self._live.get(key)
        return live is not None and live.seq == seq

    def _stale(self, bk: BucketKey, entry: _Entry) -> bool:
        return not self._is_current((entry[1], bk[0], bk[1]), entry[2])

    def _head(self, bk: BucketKey) -> _Entry | None:
        heap = self._buckets[bk].heap
        while heap and self._stale(bk, heap[0]):
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _drop(self, key: AskKey) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            bucket = self._buckets[live.bucket]
            bucket.count -= 1
            bucket.capacity -= live.ask.capacity


def best_asks(book: OrderBook, now: float) -> list[BestAsk]:
    """The best ask, the number of asking providers and their capacity per (kind, GPU
    class, region), sorted; for market data and quotes."""
    return book.best_asks(now)
