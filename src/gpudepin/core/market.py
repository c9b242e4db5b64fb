"""The rules of the spot market: orders, bids, eligibility, scoring and the sealed-bid auction.

Every batch job and every lease request becomes an ``Order``. Providers that satisfy its
``Requirements`` bid (``check_bid`` refuses a bad bid with its reason); when the bid window
ends, or enough capacity is bid, ``clear`` picks the winners by ``score`` and returns an
``Award`` or a ``NoMatchResult`` that says why in numbers. Standing asks, instant spot matching
and market data (best asks, the tape of recent clearing prices) live in
``gpudepin.core.orderbook``.

Prices are integer base units: per task for a batch order, per GPU-second for a lease.

Pricing rule: **pay-as-bid**. Each winner is paid the price it bid. A uniform price (every
winner paid the marginal price) is the textbook choice for selling identical units, but
here winners are ranked by a score that mixes price with reputation and reliability, so a
reliable provider may win over a cheaper one; paying everyone the highest winning price
would then charge the buyer more than any single bid it accepted on the cheaper share.
Pay-as-bid also keeps each payment equal to a price the provider signed, which is the
evidence a dispute needs. ``Award.clearing_price`` records the highest accepted price (the
price at which supply met demand) and ``Award.mean_price`` the quantity-weighted mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cached_property
from typing import NamedTuple

from gpudepin.core.errors import Conflict, Forbidden, InvalidInput, NoMatch
from gpudepin.core.hardware import CATALOG, GpuClass, Tier, gpu_class
from gpudepin.core.money import format_amount

MAX_LEASE_SECONDS = 30 * 24 * 3600
MAX_BID_WINDOW_S = 3600.0
DEFAULT_BID_WINDOW_S = 30.0
# The auction may close before its window ends once valid bids cover the order this many
# times over: one fast bid must not end the auction before competitors had a chance.
EARLY_CLOSE_COVER = 2
# Score weights: a provider with no reputation and no reliability record looks this much
# dearer than its bid. Price stays dominant: together they add at most 25%.
REPUTATION_WEIGHT = 0.10
RELIABILITY_WEIGHT = 0.15


class OrderKind(StrEnum):
    BATCH = "batch"  # max_price per task, quantity = tasks
    LEASE = "lease"  # max_price per GPU-second, quantity = GPUs on one machine


class OrderState(StrEnum):
    OPEN = "open"
    AWARDED = "awarded"
    NO_MATCH = "no_match"
    CANCELLED = "cancelled"


ORDER_TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    OrderState.OPEN: frozenset({OrderState.AWARDED, OrderState.NO_MATCH, OrderState.CANCELLED}),
    # a winner that never starts loses the award and the order is auctioned again
    OrderState.AWARDED: frozenset({OrderState.OPEN, OrderState.CANCELLED}),
    OrderState.NO_MATCH: frozenset({OrderState.OPEN, OrderState.CANCELLED}),
    OrderState.CANCELLED: frozenset(),
}


def order_transition(current: OrderState | str, target: OrderState | str) -> OrderState:
    """Return ``target`` if an order may move there from ``current``; raise Conflict if not."""
    cur, tgt = OrderState(current), OrderState(target)
    if tgt not in ORDER_TRANSITIONS[cur]:
        raise Conflict(f"an order cannot go from {cur} to {tgt}")
    return tgt


@dataclass(frozen=True)
class Requirements:
    """What a provider must offer. ``regions=None`` means anywhere; an empty tuple is an
    error (it would match nobody). ``tier`` is a minimum: enterprise providers may serve a
    consumer order, never the reverse."""

    gpu_class: str | None = None
    min_vram_gb: float = 0.0
    min_tflops: float = 0.0
    tier: Tier | None = None
    regions: tuple[str, ...] | None = None
    deny_regions: frozenset[str] = frozenset()
    jurisdictions: frozenset[str] | None = None


def requirements_of(raw: Mapping[str, object]) -> Requirements:
    """Requirements from their JSON form (API bodies, stored orders, what agents are sent),
    or InvalidInput naming the field. The coordinator and the agents' bid engines read
    orders with this one rule."""
    tier, regions = raw.get("tier"), raw.get("regions")
    try:
        return Requirements(
            gpu_class=str(raw["gpu_class"]) if raw.get("gpu_class") else None,
            min_vram_gb=float(str(raw.get("min_vram_gb") or 0)),
            min_tflops=float(str(raw.get("min_tflops") or 0)),
            tier=None if tier in (None, "") else Tier(str(tier)),
            regions=None if regions is None else tuple(str(r) for r in _items(regions)),
            deny_regions=frozenset(str(r) for r in _items(raw.get("deny_regions") or ())),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"requirements: {exc}", field="requirements") from None


def _items(value: object) -> Iterable[object]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ValueError(f"expected a list, got {value!r}")
    return value


@dataclass(frozen=True)
class Order:
    id: str
    kind: OrderKind
    buyer: str
    requirements: Requirements
    max_price: int
    quantity: int
    created_at: float
    duration_s: int = 0
    bid_window_s: float = DEFAULT_BID_WINDOW_S
    state: OrderState = OrderState.OPEN
    # estimated GPU-seconds per task (batch), so a provider can price a task; 0 = unknown
    task_seconds: float = 0.0

    @property
    def closes_at(self) -> float:
        return self.created_at + self.bid_window_s


@dataclass(frozen=True)
class Bid:
    order_id: str
    provider: str
    price: int
    capacity: int
    valid_until: float
    signature: str = ""  # opaque here; the coordinator checks it over ``bid_message``


@dataclass(frozen=True)
class ProviderView:
    """What the market knows of one provider (one GPU class on one machine)."""

    address: str
    gpu_class: str
    vram_gb: float
    tflops: float
    tier: Tier
    region: str
    free_capacity: int = 1
    operator: str = ""
    reputation: float = 0.5
    reliability: float = 0.5
    stake: int = 0
    jurisdiction: str = ""

    @cached_property
    def risk_penalty(self) -> float:
        """How much dearer than its price this provider's bids look (see ``score``);
        computed once per view because clearing needs it for every bid."""
        rep = min(max(self.reputation, 0.0), 1.0)
        rel = min(max(self.reliability, 0.0), 1.0)
        return 1.0 + REPUTATION_WEIGHT * (1.0 - rep) + RELIABILITY_WEIGHT * (1.0 - rel)

    @classmethod
    def of(
        cls,
        address: str,
        gpu: str,
        region: str,
        free_capacity: int = 1,
        reputation: float = 0.5,
        reliability: float = 0.5,
        tier: Tier | None = None,
        jurisdiction: str = "",
    ) -> ProviderView:
        """A view with VRAM, TFLOPS and (unless given) tier taken from the hardware catalog."""
        spec = gpu_class(gpu)
        return cls(
            address.lower(),
            spec.name,
            spec.vram_gb,
            spec.fp32_tflops,
            spec.tier if tier is None else tier,
            region.lower(),
            free_capacity,
            reputation=reputation,
            reliability=reliability,
            jurisdiction=jurisdiction,
        )


@dataclass(frozen=True)
class Ask:
    """A standing offer: ``capacity`` units of ``gpu_class`` at ``price`` (per task for
    ``kind`` batch, per GPU-second for lease) until ``valid_until``."""

    provider: str
    gpu_class: str
    region: str
    price: int
    capacity: int
    valid_until: float
    kind: OrderKind = OrderKind.LEASE
    tier: Tier = Tier.CONSUMER
    jurisdiction: str = ""


# Allocation and Release are NamedTuples, not frozen dataclasses: clearing makes one per
# bid, and a frozen dataclass costs several times more to build on that hot path.
class Allocation(NamedTuple):
    provider: str
    quantity: int
    price: int  # paid per unit (pay-as-bid)
    gpu_class: str
    region: str
    score: float = 0.0


class Release(NamedTuple):
    """Capacity a provider reserved with its bid and gets back."""

    provider: str
    capacity: int


@dataclass(frozen=True)
class Award:
    order_id: str
    kind: OrderKind
    allocations: tuple[Allocation, ...]
    clearing_price: int
    cleared_at: float
    unfilled: int = 0
    released: tuple[Release, ...] = ()
    instant: bool = False
    duration_s: int = 0

    @property
    def quantity(self) -> int:
        return sum(a.quantity for a in self.allocations)

    @property
    def mean_price(self) -> int:
        return sum(a.price * a.quantity for a in self.allocations) // max(self.quantity, 1)

    @property
    def cost(self) -> int:
        """What the buyer owes at most: per task for batch, for the whole lease otherwise."""
        per_unit = sum(a.price * a.quantity for a in self.allocations)
        return per_unit * self.duration_s if self.kind is OrderKind.LEASE else per_unit


@dataclass(frozen=True)
class NoMatchResult:
    """Why an order cannot clear, in numbers. ``funnel`` counts the providers left after
    each requirement; ``suggested_max_price`` is the lowest maximum that would have cleared
    the whole order, when the offers seen could have done it at any price."""

    order_id: str
    reasons: tuple[str, ...]
    funnel: tuple[tuple[str, int], ...] = ()
    lowest_price: int | None = None
    suggested_max_price: int | None = None
    at: float = 0.0

    @property
    def would_match(self) -> bool:
        return not self.reasons

    def to_error(self) -> NoMatch:
        return NoMatch(
            "; ".join(self.reasons) or "no match",
            order_id=self.order_id,
            reasons=list(self.reasons),
            funnel=dict(self.funnel),
            lowest_price=self.lowest_price,
            suggested_max_price=self.suggested_max_price,
        )


# ---------------------------------------------------------------- validation


def _bad(field_name: str, message: str, hint: str | None = None) -> InvalidInput:
    return InvalidInput(f"{field_name}: {message}", hint=hint, field=field_name)


def matching_classes(req: Requirements) -> list[GpuClass]:
    """The catalog classes whose figures satisfy ``req`` (sorted by name)."""
    if req.gpu_class is not None:
        classes = [gpu_class(req.gpu_class)]
    else:
        classes = [CATALOG[name] for name in sorted(CATALOG)]
    return [
        c
        for c in classes
        if c.vram_gb >= req.min_vram_gb
        and c.fp32_tflops >= req.min_tflops
        and tier_allows(req.tier, c.tier)
    ]


def tier_allows(required: Tier | None, offered: Tier) -> bool:
    return required is None or required is Tier.CONSUMER or offered is Tier.ENTERPRISE


def validate_order(order: Order, max_duration_s: int = MAX_LEASE_SECONDS) -> Order:
    """Return ``order`` normalised (GPU class and regions lower-cased) or raise
    InvalidInput naming the first bad field."""
    req = order.requirements
    if not order.id:
        raise _bad("id", "an order needs an id")
    if order.max_price <= 0:
        raise _bad("max_price", f"must be positive, got {order.max_price}")
    if order.quantity <= 0:
        raise _bad("quantity", f"must be positive, got {order.quantity}")
    if req.gpu_class is not None:
        try:
            gpu_class(req.gpu_class)
        except InvalidInput as exc:
            raise _bad("gpu_class", exc.message, exc.hint) from None
    if req.min_vram_gb < 0 or req.min_tflops < 0:
        raise _bad("min_vram_gb" if req.min_vram_gb < 0 else "min_tflops", "must not be negative")
    if req.regions is not None and not [r for r in req.regions if r]:
        raise _bad("regions", "the region list is empty", "Leave it out to accept any region.")
    regions = None if req.regions is None else tuple(sorted({r.lower() for r in req.regions}))
    deny = frozenset(r.lower() for r in req.deny_regions)
    if regions is not None and set(regions) <= deny:
        raise _bad("deny_regions", "denies every allowed region")
    if req.jurisdictions is not None and not req.jurisdictions:
        raise _bad("jurisdictions", "the jurisdiction list is empty")
    if not matching_classes(req):
        raise _bad(
            "requirements",
            f"no GPU class offers {req.min_vram_gb} GB VRAM, {req.min_tflops} TFLOPS"
            f"{'' if req.gpu_class is None else ' as ' + req.gpu_class}"
            f"{'' if req.tier is None else ' at tier ' + req.tier}",
        )
    if order.kind is OrderKind.LEASE:
        if order.duration_s <= 0:
            raise _bad("duration_s", f"a lease needs a positive duration, got {order.duration_s}")
        if order.duration_s > max_duration_s:
            raise _bad(
                "duration_s",
                f"{order.duration_s} s is beyond the maximum of {max_duration_s} s",
                "Split a long rental into several leases.",
            )
    elif order.duration_s != 0:
        raise _bad("duration_s", "only leases have a duration")
    if not 0 <= order.bid_window_s <= MAX_BID_WINDOW_S:
        raise _bad("bid_window_s", f"must be between 0 and {MAX_BID_WINDOW_S:g} s")
    if order.task_seconds < 0:
        raise _bad("task_seconds", "must not be negative")
    norm = replace(
        req,
        gpu_class=None if req.gpu_class is None else req.gpu_class.lower(),
        regions=regions,
        deny_regions=deny,
    )
    return replace(order, requirements=norm)


# ---------------------------------------------------------------- eligibility and bids


def region_allowed(req: Requirements, region: str, jurisdiction: str) -> bool:
    return (
        (req.regions is None or region in req.regions)
        and region not in req.deny_regions
        and (req.jurisdictions is None or jurisdiction in req.jurisdictions)
    )


def _hardware_reasons(req: Requirements, p: ProviderView) -> list[str]:
    reasons = []
    if req.gpu_class is not None and p.gpu_class != req.gpu_class:
        reasons.append(f"has {p.gpu_class}, the order needs {req.gpu_class}")
    if p.vram_gb < req.min_vram_gb:
        reasons.append(f"has {p.vram_gb:g} GB VRAM, the order needs {req.min_vram_gb:g}")
    if p.tflops < req.min_tflops:
        reasons.append(f"has {p.tflops:g} TFLOPS, the order needs {req.min_tflops:g}")
    return reasons


def _location_reasons(req: Requirements, p: ProviderView) -> list[str]:
    reasons = []
    if req.regions is not None and p.region not in req.regions:
        reasons.append(f"is in {p.region}, the order allows {', '.join(req.regions)}")
    if p.region in req.deny_regions:
        reasons.append(f"is in {p.region}, which the order denies")
    if req.jurisdictions is not None and p.jurisdiction not in req.jurisdictions:
        reasons.append(
            f"is under jurisdiction {p.jurisdiction or 'unknown'}, the order allows "
            f"{', '.join(sorted(req.jurisdictions))}"
        )
    return reasons


def _fits(req: Requirements, p: ProviderView) -> bool:
    """``eligible`` without the capacity check (a bid reserved its own) and without
    building reasons: the clearing hot path calls it for every bid."""
    return (
        (req.gpu_class is None or p.gpu_class == req.gpu_class)
        and p.vram_gb >= req.min_vram_gb
        and p.tflops >= req.min_tflops
        and region_allowed(req, p.region, p.jurisdiction)
        and tier_allows(req.tier, p.tier)
    )


def _needed_capacity(order: Order) -> int:
    # a lease's GPUs must sit on one machine; a batch can take any share of its tasks
    return order.quantity if order.kind is OrderKind.LEASE else 1


def eligible(order: Order, provider: ProviderView) -> list[str]:
    """Every reason ``provider`` cannot serve ``order``; an empty list means it can."""
    req = order.requirements
    reasons = _hardware_reasons(req, provider) + _location_reasons(req, provider)
    if not tier_allows(req.tier, provider.tier):
        reasons.append(f"is {provider.tier} tier, the order needs {req.tier}")
    need = _needed_capacity(order)
    if provider.free_capacity < need:
        reasons.append(f"has {provider.free_capacity} free, the order needs {need}")
    return reasons


def bid_message(bid: Bid) -> str:
    """The canonical text a provider signs for ``bid`` (EIP-191 personal message)."""
    return (
        f"gpudepin bid\norder: {bid.order_id}\nprovider: {bid.provider.lower()}\n"
        f"price: {bid.price}\ncapacity: {bid.capacity}\nvalid_until: {bid.valid_until:.3f}"
    )


def check_bid(
    order: Order, bid: Bid, provider: ProviderView, existing_bids: Iterable[Bid], now: float
) -> None:
    """Refuse a bad bid with its reason: InvalidInput for a bad value or an ineligible
    provider, Conflict for a closed order or a second bid, Forbidden for a bid signed
    for someone else."""
    if bid.order_id != order.id:
        raise InvalidInput(f"the bid is for order {bid.order_id}, not {order.id}")
    if bid.provider.lower() != provider.address.lower():
        raise Forbidden(f"bid from {bid.provider} presented as {provider.address}")
    if order.state is not OrderState.OPEN:
        raise Conflict(f"order {order.id} is {order.state}; it takes no more bids")
    if now >= order.closes_at:
        raise Conflict(
            f"order {order.id}'s bid window closed {now - order.closes_at:.1f} s ago",
            hint="Bid on an open order: they are listed in your poll.",
        )
    if bid.price <= 0:
        raise _bad("price", f"must be positive, got {bid.price}")
    if bid.capacity <= 0:
        raise _bad("capacity", f"must be positive, got {bid.capacity}")
    if bid.price > order.max_price:
        raise _bad(
            "price",
            f"{format_amount(bid.price)} is above the order's maximum "
            f"{format_amount(order.max_price)}",
        )
    if bid.capacity > order.quantity:
        raise _bad("capacity", f"{bid.capacity} is more than the order's {order.quantity}")
    if order.kind is OrderKind.LEASE and bid.capacity < order.quantity:
        raise _bad("capacity", f"a lease needs all {order.quantity} GPUs on one machine")
    if bid.capacity > provider.free_capacity:
        raise _bad("capacity", f"{bid.capacity} is more than the {provider.free_capacity} free")
    if bid.valid_until < order.closes_at:
        raise _bad("valid_until", "the bid expires before the auction closes")
    reasons = eligible(order, provider)
    if reasons:
        raise InvalidInput(
            f"provider {provider.address} does not meet order {order.id}: {'; '.join(reasons)}",
            reasons=reasons,
        )
    address = provider.address.lower()
    if any(b.provider.lower() == address and b.order_id == order.id for b in existing_bids):
        raise Conflict(
            f"provider {provider.address} already bid on order {order.id}",
            hint="A bid is sealed and final.",
        )


# ---------------------------------------------------------------- scoring and clearing


def score(bid: Bid, provider: ProviderView, order: Order) -> float:
    """The share of the buyer's maximum a bid saves once provider risk is priced in.

    ``adjusted = price * (1 + 0.10 * (1 - reputation) + 0.15 * (1 - reliability))`` and
    ``score = 1 - adjusted / max_price``; higher wins. A bid at half the maximum from a
    perfect provider scores 0.5; from an unknown provider (0.5, 0.5) it scores 0.4375. Price
    dominates: risk can make a bid look at most 25% dearer. Equal scores are broken by lower
    price, then by provider address (see ``_rank_key``), so clearing is deterministic.
    """
    return 1.0 - bid.price * provider.risk_penalty / order.max_price


def _rank_key(scored: tuple[float, Bid, ProviderView]) -> tuple[float, int, str]:
    return (-scored[0], scored[1].price, scored[2].address)


def _valid_bids(
    order: Order,
    bids: Iterable[Bid],
    providers: Mapping[str, ProviderView],
    now: float,
    excluded: frozenset[str],
) -> tuple[list[tuple[float, Bid, ProviderView]], dict[str, int], list[Release]]:
    """Bids that may still win, the count of each reason the others were set aside, and
    the capacity those others release."""
    valid: list[tuple[float, Bid, ProviderView]] = []
    dropped: dict[str, int] = {}
    released: list[Release] = []
    seen: set[str] = set()
    need = _needed_capacity(order)
    req, max_price, order_id = order.requirements, order.max_price, order.id
    for bid in bids:
        if bid.order_id != order_id:
            raise InvalidInput(f"bid for order {bid.order_id} passed to clear order {order_id}")
        address = bid.provider.lower()
        provider = providers.get(address)
        why = ""
        if address in seen:
            why = "duplicate"
        elif address in excluded:
            why = "excluded"
        elif provider is None:
            why = "unknown provider"
        elif bid.valid_until < now:
            why = "expired"
        elif bid.price > max_price:
            why = "above maximum"
        elif bid.price <= 0:
            why = "price not positive"
        elif bid.capacity < need:
            why = "too little capacity"
        elif not _fits(req, provider):
            why = "ineligible"
        seen.add(address)
        if not why and provider is not None:
            # score(bid, provider, order), inlined: this line runs for every bid
            valid.append((1.0 - bid.price * provider.risk_penalty / max_price, bid, provider))
        else:
            dropped[why] = dropped.get(why, 0) + 1
            if bid.capacity > 0 and why != "duplicate":
                released.append(Release(address, bid.capacity))
    return valid, dropped, released


def ready_to_clear(
    order: Order,
    bids: Iterable[Bid],
    now: float,
    cover: int = EARLY_CLOSE_COVER,
) -> bool:
    """Whether the auction may close: its window is over, or live bids at or below the
    maximum cover the order ``cover`` times over."""
    if now >= order.closes_at:
        return True
    usable = [b for b in bids if b.valid_until >= now and 0 < b.price <= order.max_price]
    if order.kind is OrderKind.LEASE:
        return sum(1 for b in usable if b.capacity >= order.quantity) >= cover
    return sum(min(b.capacity, order.quantity) for b in usable) >= cover * order.quantity


def clear(
    order: Order,
    bids: Sequence[Bid],
    providers: Mapping[str, ProviderView],
    now: float,
    *,
    excluded: Iterable[str] = (),
    cover: int = EARLY_CLOSE_COVER,
    check_window: bool = True,
) -> Award | NoMatchResult:
    """Run the sealed-bid reverse auction for ``order``.

    ``providers`` maps lower-case addresses to their current view; a bid from a provider not
    in it (gone offline) or in ``excluded`` is set aside. Winners are taken in score order;
    a batch order is split over as many winners as it needs, a lease goes whole to one
    provider. Every winner is paid its own bid (see the module docstring). The result never
    pays above the maximum, never allocates more than a bid offered, and does not depend on
    the order of ``bids``. Capacity that did not win is listed in ``Award.released``.
    Raises Conflict while the auction is still open (see ``ready_to_clear``).
    """
    if check_window and not ready_to_clear(order, bids, now, cover):
        raise Conflict(f"order {order.id}'s auction is open until {order.closes_at:.1f}")
    out = frozenset(a.lower() for a in excluded)
    valid, dropped, released = _valid_bids(order, bids, providers, now, out)
    valid.sort(key=_rank_key)
    remaining = order.quantity
    allocations: list[Allocation] = []
    for s, bid, provider in valid:
        take = min(bid.capacity, remaining)
        if take > 0:
            allocations.append(
                Allocation(
                    provider.address.lower(),
                    take,
                    bid.price,
                    provider.gpu_class,
                    provider.region,
                    s,
                )
            )
            remaining -= take
        if bid.capacity > take:
            released.append(Release(provider.address.lower(), bid.capacity - take))
    if not allocations:
        return _no_match_from_bids(order, len(bids), dropped, now)
    released.sort()
    return Award(
        order.id,
        order.kind,
        tuple(allocations),
        clearing_price=max(a.price for a in allocations),
        cleared_at=now,
        unfilled=remaining,
        released=tuple(released),
        duration_s=order.duration_s,
    )


def reaward(
    order: Order,
    bids: Sequence[Bid],
    excluded: Iterable[str],
    providers: Mapping[str, ProviderView],
    now: float,
) -> Award | NoMatchResult:
    """Auction ``order`` again among its remaining bids after the winners in ``excluded``
    failed to start in time; the window is not waited for again."""
    return clear(order, bids, providers, now, excluded=excluded, check_window=False)


def _unit(order: Order) -> str:
    return "/h" if order.kind is OrderKind.LEASE else "/task"


def display_price(order: Order, price: int) -> str:
    """A price as people read it: tokens per GPU-hour for leases, per task for batches."""
    shown = price * 3600 if order.kind is OrderKind.LEASE else price
    # per-second prices are rounded down to base units, so round to the places shown
    step = 10**12
    shown = (shown + step // 2) // step * step
    return f"{format_amount(shown)}{_unit(order)}"


def _no_match_from_bids(
    order: Order, received: int, dropped: Mapping[str, int], now: float
) -> NoMatchResult:
    if received == 0:
        reasons = [f"no provider bid on order {order.id} within {order.bid_window_s:g} s"]
    else:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(dropped.items()))
        reasons = [f"{received} bids received, none usable: {parts}"]
    return NoMatchResult(
        order.id, tuple(reasons), (("bids", received), *sorted(dropped.items())), at=now
    )


# ---------------------------------------------------------------- explaining a no-match


@dataclass(frozen=True)
class _Offer:
    provider: str
    price: int
    capacity: int


def _offers(
    order: Order, asks: Iterable[Ask], bids: Iterable[Bid], now: float
) -> dict[str, list[_Offer]]:
    offers: dict[str, list[_Offer]] = {}
    for ask in asks:
        if ask.kind is order.kind and ask.valid_until >= now and ask.capacity > 0:
            offers.setdefault(ask.provider.lower(), []).append(
                _Offer(ask.provider.lower(), ask.price, ask.capacity)
            )
    for bid in bids:
        if bid.order_id == order.id and bid.valid_until >= now and bid.capacity > 0:
            offers.setdefault(bid.provider.lower(), []).append(
                _Offer(bid.provider.lower(), bid.price, bid.capacity)
            )
    return offers


def _where(req: Requirements) -> str:
    return "" if req.regions is None else f" in {', '.join(req.regions)}"


def _what(req: Requirements) -> str:
    if req.gpu_class is not None:
        return req.gpu_class
    parts = []
    if req.min_vram_gb:
        parts.append(f"{req.min_vram_gb:g} GB+")
    if req.min_tflops:
        parts.append(f"{req.min_tflops:g} TFLOPS+")
    return "a GPU with " + " and ".join(parts) if parts else "a GPU"


def _tally(values: Iterable[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return ", ".join(f"{k}: {n}" for k, n in top)


def _fill_price(order: Order, offers: list[_Offer]) -> int | None:
    """The lowest maximum price at which ``offers`` fill the whole order."""
    remaining = order.quantity
    for offer in sorted(offers, key=lambda o: (o.price, o.provider)):
        if order.kind is OrderKind.LEASE:
            if offer.capacity >= order.quantity:
                return offer.price
            continue
        remaining -= offer.capacity
        if remaining <= 0:
            return offer.price
    return None


def explain_no_match(
    order: Order,
    providers: Iterable[ProviderView],
    asks: Iterable[Ask] = (),
    bids: Iterable[Bid] = (),
    now: float = 0.0,
) -> NoMatchResult:
    """Say in numbers why ``order`` cannot clear against ``providers`` and their asks or
    bids, stage by stage (hardware, place, tier, free capacity, price). Works before
    submitting (a quote, with standing asks) and after an auction (with its bids). An empty
    ``reasons`` means the order would clear in full."""
    req = order.requirements
    pool = sorted(providers, key=lambda p: p.address)
    funnel: list[tuple[str, int]] = [("providers", len(pool))]
    what, where = _what(req), _where(req)
    hw = [p for p in pool if not _hardware_reasons(req, p)]
    funnel.append((f"with {what}", len(hw)))
    if not hw:
        seen = f" (online: {_tally(p.gpu_class for p in pool)})" if pool else ""
        return NoMatchResult(
            order.id, (f"no provider of {len(pool)} has {what}{seen}",), tuple(funnel), at=now
        )
    placed = [p for p in hw if not _location_reasons(req, p)]
    funnel.append((f"with {what}{where}", len(placed)))
    if not placed:
        return NoMatchResult(
            order.id,
            (
                f"{len(hw)} providers have {what}, none{where} allowed by the order "
                f"(they are in {_tally(p.region for p in hw)})",
            ),
            tuple(funnel),
            at=now,
        )
    tiered = [p for p in placed if tier_allows(req.tier, p.tier)]
    funnel.append((f"at tier {req.tier or 'any'}", len(tiered)))
    if not tiered:
        return NoMatchResult(
            order.id,
            (f"{len(placed)} providers{where} have {what}; none is {req.tier} tier",),
            tuple(funnel),
            at=now,
        )
    need = _needed_capacity(order)
    free = [p for p in tiered if p.free_capacity >= need]
    funnel.append(("with free capacity", len(free)))
    if not free:
        return NoMatchResult(
            order.id,
            (f"{len(tiered)} providers{where} have {what}; all are busy (need {need} free)",),
            tuple(funnel),
            at=now,
        )
    offers = _offers(order, asks, bids, now)
    priced = [o for p in free for o in offers.get(p.address.lower(), [])]
    funnel.append(("with an ask or bid", len({o.provider for o in priced})))
    head = f"{len(free)} providers{where} have {what}"
    if not priced:
        return NoMatchResult(
            order.id, (f"{head}; none has posted an ask or bid",), tuple(funnel), at=now
        )
    lowest = min(o.price for o in priced)
    suggested = _fill_price(order, priced)
    within = [o for o in priced if o.price <= order.max_price]
    funnel.append((f"at or below {display_price(order, order.max_price)}", len(within)))
    reasons: list[str] = []
    if not within:
        reasons.append(
            f"{head}; all ask more than {display_price(order, order.max_price)}; "
            f"lowest ask {display_price(order, lowest)}"
        )
    elif _fill_price(order, within) is None:
        offered = sum(o.capacity for o in within)
        if order.kind is OrderKind.LEASE:
            reasons.append(
                f"{len(within)} offers at or below {display_price(order, order.max_price)}, "
                f"none with {order.quantity} GPUs on one machine"
            )
        else:
            reasons.append(
                f"{len(within)} offers at or below {display_price(order, order.max_price)} "
                f"cover {offered} of {order.quantity} tasks"
            )
    return NoMatchResult(order.id, tuple(reasons), tuple(funnel), lowest, suggested, now)
