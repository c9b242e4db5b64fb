"""Standing asks, instant spot matching and market data.

An order at or above the best ask clears at once. ``best_asks`` and ``PriceTape`` (recent
clearing prices per kind, class and region) are the market data the API shows.

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
from dataclasses import dataclass, field, replace

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import CATALOG, Tier, gpu_class
from gpudepin.core.market import (
    Allocation,
    Ask,
    Award,
    Order,
    OrderKind,
    Requirements,
    matching_classes,
    region_allowed,
    tier_allows,
)

BucketKey = tuple[OrderKind, str, Tier, str, str]  # kind, class, tier, region, jurisdiction
AskKey = tuple[str, OrderKind, str]  # provider, kind, class
_Entry = tuple[int, str, int]  # price, provider, seq
_MAX_CACHED = 4096


class _Live:
    """A posted ask and its capacity left; capacity changes in place, without touching
    the heap, because it does not change the ask's rank."""

    __slots__ = ("ask", "bucket", "capacity", "seq")

    def __init__(self, ask: Ask, seq: int, bucket: BucketKey) -> None:
        self.ask = ask
        self.seq = seq
        self.bucket = bucket
        self.capacity = ask.capacity


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
        self._matches: dict[tuple[OrderKind, Requirements], list[BucketKey]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def post(self, ask: Ask) -> None:
        """Place or replace ``ask`` in O(log n); a capacity of 0 withdraws it."""
        if ask.price <= 0:
            raise InvalidInput(f"price: must be positive, got {ask.price}", field="price")
        if ask.capacity < 0:
            raise InvalidInput(f"capacity: must not be negative, got {ask.capacity}")
        cls = ask.gpu_class if ask.gpu_class in CATALOG else gpu_class(ask.gpu_class).name
        if (ask.provider, ask.gpu_class, ask.region) != (
            ask.provider.lower(),
            cls,
            ask.region.lower(),
        ):
            ask = replace(
                ask, provider=ask.provider.lower(), gpu_class=cls, region=ask.region.lower()
            )
        key = (ask.provider, ask.kind, cls)
        self._drop(key)
        self._spent.pop(key, None)
        if ask.capacity > 0:
            self._insert(key, ask)

    def withdraw(self, provider: str, kind: OrderKind, gpu: str) -> None:
        """Take a provider's ask for ``gpu`` off the book (no-op if it has none)."""
        key = (provider.lower(), kind, gpu.lower())
        self._drop(key)
        self._spent.pop(key, None)

    def release(self, provider: str, kind: OrderKind, gpu: str, capacity: int) -> None:
        """Give back capacity an award took, when the work is done or the award lapsed; a
        no-op if the provider withdrew or replaced the ask meanwhile. O(1), or O(log n)
        when the ask had been used up."""
        if capacity <= 0:
            return
        key = (provider.lower(), kind, gpu.lower())
        live = self._live.get(key)
        if live is not None:
            live.capacity += capacity
            self._buckets[live.bucket].capacity += capacity
            return
        spent = self._spent.pop(key, None)
        if spent is not None:
            self._insert(key, replace(spent, capacity=capacity))

    def get(self, provider: str, kind: OrderKind, gpu: str) -> Ask | None:
        """The provider's ask with the capacity it has left, or None."""
        live = self._live.get((provider.lower(), kind, gpu.lower()))
        return None if live is None else self._current(live)

    def asks(self, now: float) -> Iterator[Ask]:
        """Every live ask, sorted by provider (for quotes and explanations; O(n))."""
        for key in sorted(self._live):
            ask = self._current(self._live[key])
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
                found = self._current(self._live[(head[1], kind, bk[1])])
        return found

    def match_instant(
        self, order: Order, now: float, *, allow_partial: bool = False
    ) -> Award | None:
        """Fill ``order`` at once from asks at or below its maximum, cheapest first, each
        winner paid its ask; the capacity taken leaves the book (``release`` returns it).
        A lease goes whole to one ask with enough GPUs. Returns None, and leaves the book
        as it was, when the asks cannot fill the order (or any of it, with
        ``allow_partial``): the order then goes to the auction."""
        if self._expiry and self._expiry[0][0] < now:
            self.expire(now)
        heads: list[tuple[int, str, int, BucketKey]] = []
        for bk in self._candidates(order):
            head = self._head(bk)
            if head is not None:
                heads.append((*head, bk))
        heapq.heapify(heads)
        popped: list[tuple[BucketKey, _Entry]] = []
        taken: list[tuple[_Live, int]] = []
        remaining = order.quantity
        whole = order.quantity if order.kind is OrderKind.LEASE else 1
        while heads and remaining > 0 and heads[0][0] <= order.max_price:
            price, provider, seq, bk = heapq.heappop(heads)
            heapq.heappop(self._buckets[bk].heap)
            popped.append((bk, (price, provider, seq)))
            live = self._live[(provider, bk[0], bk[1])]
            if live.capacity >= whole:
                take = min(live.capacity, remaining)
                taken.append((live, take))
                remaining -= take
            head = self._head(bk)
            if head is not None:
                heapq.heappush(heads, (*head, bk))
        # every popped entry goes back; those of asks used up become stale and fall out
        for bk, entry in popped:
            heapq.heappush(self._buckets[bk].heap, entry)
        if not taken or (remaining > 0 and not allow_partial):
            return None
        allocations = []
        for live, take in taken:
            ask = live.ask
            allocations.append(Allocation(ask.provider, take, ask.price, ask.gpu_class, ask.region))
            live.capacity -= take
            self._buckets[live.bucket].capacity -= take
            if live.capacity == 0:
                key = (ask.provider, ask.kind, ask.gpu_class)
                self._drop(key)
                self._spent[key] = ask
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

    def _insert(self, key: AskKey, ask: Ask) -> None:
        bk: BucketKey = (ask.kind, ask.gpu_class, ask.tier, ask.region, ask.jurisdiction)
        bucket = self._buckets.get(bk)
        if bucket is None:
            bucket = self._buckets[bk] = _Bucket()
            regions = self._index.setdefault((ask.kind, ask.gpu_class), {})
            regions.setdefault(ask.region, []).append(bk)
            self._matches.clear()
        self._seq += 1
        self._live[key] = _Live(ask, self._seq, bk)
        heapq.heappush(bucket.heap, (ask.price, ask.provider, self._seq))
        heapq.heappush(self._expiry, (ask.valid_until, self._seq, key))
        bucket.count += 1
        bucket.capacity += ask.capacity
        # lazy deletion leaves stale entries behind; sweep once they outnumber live ones
        if len(bucket.heap) > 2 * bucket.count + 32:
            bucket.heap = [e for e in bucket.heap if not self._stale(bk, e)]
            heapq.heapify(bucket.heap)
        if len(self._expiry) > 2 * len(self._live) + 32:
            self._expiry = [e for e in self._expiry if self._is_current(e[2], e[1])]
            heapq.heapify(self._expiry)

    @staticmethod
    def _current(live: _Live) -> Ask:
        if live.capacity == live.ask.capacity:
            return live.ask
        return replace(live.ask, capacity=live.capacity)

    def _candidates(self, order: Order) -> list[BucketKey]:
        """The buckets ``order`` may draw on; cached per requirements until a bucket is
        added, so repeated shapes of order cost one dict lookup."""
        cache_key = (order.kind, order.requirements)
        found = self._matches.get(cache_key)
        if found is None:
            if len(self._matches) >= _MAX_CACHED:
                self._matches.clear()
            found = self._matches[cache_key] = self._find_candidates(order)
        return found

    def _find_candidates(self, order: Order) -> list[BucketKey]:
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
        live_asks = self._live
        kind, cls = bk[0], bk[1]
        while heap:
            top = heap[0]
            live = live_asks.get((top[1], kind, cls))
            if live is not None and live.seq == top[2]:
                return top
            heapq.heappop(heap)
        return None

    def _drop(self, key: AskKey) -> None:
        live = self._live.pop(key, None)
        if live is not None:
            bucket = self._buckets[live.bucket]
            bucket.count -= 1
            bucket.capacity -= live.capacity


def best_asks(book: OrderBook, now: float) -> list[BestAsk]:
    """The best ask, the number of asking providers and their capacity per (kind, GPU
    class, region), sorted; for market data and quotes."""
    return book.best_asks(now)


@dataclass(frozen=True)
class ClearingPrint:
    """One recorded clearing, for market data."""

    kind: OrderKind
    gpu_class: str
    region: str
    price: int
    quantity: int
    at: float


def prints_of(award: Award) -> list[ClearingPrint]:
    """The clearing prints an award adds to the tape, one per allocation."""
    return [
        ClearingPrint(award.kind, a.gpu_class, a.region, a.price, a.quantity, award.cleared_at)
        for a in award.allocations
    ]


@dataclass(frozen=True)
class PriceSummary:
    kind: OrderKind
    gpu_class: str
    region: str
    last: int
    low: int
    high: int
    vwap: int
    prints: int
    quantity: int


@dataclass
class PriceTape:
    """Recent clearing prices per (kind, GPU class, region), ``keep`` prints each."""

    keep: int = 256
    _tape: dict[tuple[OrderKind, str, str], list[ClearingPrint]] = field(
        default_factory=dict, init=False, repr=False
    )

    def record(self, award: Award) -> None:
        for p in prints_of(award):
            series = self._tape.setdefault((p.kind, p.gpu_class, p.region), [])
            series.append(p)
            if len(series) > self.keep:
                del series[: len(series) - self.keep]

    def summary(self, now: float, window_s: float = 3600.0) -> list[PriceSummary]:
        """Last, low, high and volume-weighted price of the prints in the last
        ``window_s`` seconds, sorted by kind, class and region."""
        out = []
        for (kind, cls, region), series in sorted(self._tape.items()):
            recent = [p for p in series if now - window_s <= p.at <= now]
            if not recent:
                continue
            qty = sum(p.quantity for p in recent)
            out.append(
                PriceSummary(
                    kind,
                    cls,
                    region,
                    recent[-1].price,
                    min(p.price for p in recent),
                    max(p.price for p in recent),
                    sum(p.price * p.quantity for p in recent) // qty,
                    len(recent),
                    qty,
                )
            )
        return out
