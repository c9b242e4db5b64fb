"""The provider's bid engine: what to ask for an order, from the provider's own costs.

A strategy sees the exact order (kind, duration, allowed regions, task size) and the GPU the
provider would serve it with (``ProviderView``: class, region, free capacity), and returns a
price in base units (per task for a batch order, per GPU-second for a lease) or None to
stay out. ``CostStrategy`` is the default; a provider may name its own class in its config
(``strategy = "mypkg.pricing:MyStrategy"``) and ``load_strategy`` loads it: the provider's
own code, on the provider's own machine.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol, runtime_checkable

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import gpu_class
from gpudepin.core.market import Ask, Bid, Order, OrderKind, ProviderView, eligible
from gpudepin.core.money import UNIT

BUILTIN = {"cost": "gpudepin.provider.strategy:CostStrategy"}
DEFAULT_BID_VALIDITY_S = 300.0


@runtime_checkable
class Strategy(Protocol):
    def price(self, order: Order, gpu: ProviderView, utilization: float) -> int | None:
        """The price to bid on ``order`` with ``gpu`` at the machine's current
        ``utilization`` (0..1), in base units; None to stay out."""
        ...


def _ceil_div(a: Fraction, b: Fraction) -> int:
    q = a / b
    return -(-q.numerator // q.denominator)


@dataclass(frozen=True)
class CostStrategy:
    """Price from cost: the floor is the card's loaded wall power (hardware catalog) times
    the electricity price (times PUE), plus ``margin`` on top of it, plus any fixed
    ``extra_usd_per_hour`` (depreciation, bandwidth). The price rises linearly with
    utilization, to ``floor * (1 + utilization_markup)`` on a fully busy machine, and a lease
    shorter than ``short_lease_s`` pays ``short_lease_premium`` more for the set-up it
    costs. Never below the floor. USD become tokens at ``token_usd_price``; base units are
    rounded up, so rounding cannot take a price under the floor."""

    electricity_usd_per_kwh: float = 0.16
    margin: float = 0.25
    token_usd_price: float = 1.0
    extra_usd_per_hour: float = 0.0
    pue: float = 1.0
    utilization_markup: float = 1.0
    short_lease_s: float = 3600.0
    short_lease_premium: float = 0.10
    default_task_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in (
            "electricity_usd_per_kwh",
            "margin",
            "extra_usd_per_hour",
            "utilization_markup",
            "short_lease_premium",
            "short_lease_s",
        ):
            if getattr(self, name) < 0:
                raise InvalidInput(f"strategy setting {name} must not be negative", field=name)
        for name in ("token_usd_price", "pue", "default_task_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"strategy setting {name} must be positive", field=name)

    def floor_usd_per_hour(self, gpu: str) -> float:
        """What an hour of ``gpu`` costs this provider, margin included."""
        kw = gpu_class(gpu).wall_watts_loaded / 1000 * self.pue
        return kw * self.electricity_usd_per_kwh * (1 + self.margin) + self.extra_usd_per_hour

    def usd_per_hour(self, order: Order, gpu: ProviderView, utilization: float) -> float:
        """The hourly price in USD for ``order`` on ``gpu``, before conversion to tokens."""
        u = min(max(utilization, 0.0), 1.0)
        usd = self.floor_usd_per_hour(gpu.gpu_class) * (1 + self.utilization_markup * u)
        if order.kind is OrderKind.LEASE and order.duration_s < self.short_lease_s:
            usd *= 1 + self.short_lease_premium
        return usd

    def per_second(self, usd_per_hour: float) -> int:
        """Base units of the token per GPU-second for an hourly USD price (rounded up)."""
        return _ceil_div(
            Fraction(usd_per_hour) * UNIT, Fraction(3600) * Fraction(self.token_usd_price)
        )

    def price(self, order: Order, gpu: ProviderView, utilization: float) -> int | None:
        """Per GPU-second for a lease; per task for a batch (its estimated seconds, or
        ``default_task_seconds`` when the order gives none). None above the order's max."""
        usd = self.usd_per_hour(order, gpu, utilization)
        if order.kind is OrderKind.LEASE:
            value = self.per_second(usd)
        else:
            seconds = order.task_seconds or self.default_task_seconds
            value = _ceil_div(
                Fraction(usd) * Fraction(seconds) * UNIT,
                Fraction(3600) * Fraction(self.token_usd_price),
            )
        return value if value <= order.max_price else None

    def ask(
        self,
        gpu: ProviderView,
        kind: OrderKind,
        utilization: float,
        now: float,
        valid_s: float = DEFAULT_BID_VALIDITY_S,
    ) -> Ask:
        """A standing ask for ``gpu``'s free capacity (per GPU-second for leases, per task
        of ``default_task_seconds`` for batches), for the instant spot book."""
        usd = self.floor_usd_per_hour(gpu.gpu_class) * (
            1 + self.utilization_markup * min(max(utilization, 0.0), 1.0)
        )
        per_s = Fraction(usd) * UNIT / (Fraction(3600) * Fraction(self.token_usd_price))
        scale = 1 if kind is OrderKind.LEASE else Fraction(self.default_task_seconds)
        value = _ceil_div(per_s * scale, Fraction(1))
        return Ask(
            gpu.address,
            gpu.gpu_class,
            gpu.region,
            value,
            gpu.free_capacity,
            now + valid_s,
            kind=kind,
            tier=gpu.tier,
            jurisdiction=gpu.jurisdiction,
        )


def make_bid(
    strategy: Strategy,
    order: Order,
    gpu: ProviderView,
    utilization: float,
    now: float,
    valid_s: float = DEFAULT_BID_VALIDITY_S,
) -> Bid | None:
    """The bid ``strategy`` makes on ``order``, or None when the provider cannot serve it,
    the strategy stays out, or its price is not in (0, max_price]. The bid reserves all of a
    lease's GPUs, or as many tasks of a batch as the provider has free."""
    if eligible(order, gpu):
        return None
    price = strategy.price(order, gpu, utilization)
    if price is None or not 0 < price <= order.max_price:
        return None
    capacity = (
        order.quantity if order.kind is OrderKind.LEASE else min(gpu.free_capacity, order.quantity)
    )
    return Bid(order.id, gpu.address, price, capacity, max(now, order.closes_at) + valid_s)


def load_strategy(spec: str, settings: Mapping[str, Any] | None = None) -> Strategy:
    """Build the strategy named ``spec`` (``"package.module:ClassName"`` or a built-in name
    such as ``"cost"``) with ``settings`` as keyword arguments."""
    target = BUILTIN.get(spec, spec)
    module_name, sep, class_name = target.partition(":")
    hint = "Name it as package.module:ClassName, importable on this machine."
    if not sep or not module_name or not class_name:
        raise InvalidInput(f"strategy {spec!r} is not of the form module:Class", hint=hint)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"cannot import strategy module {module_name}: {exc}", hint=hint
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InvalidInput(f"module {module_name} has no {class_name}", hint=hint)
    try:
        instance = cls(**dict(settings or {}))
    except TypeError as exc:
        raise InvalidInput(
            f"strategy {target} does not take these settings: {exc}",
            hint="Check the [strategy] settings in the provider config.",
        ) from exc
    if not isinstance(instance, Strategy):
        raise InvalidInput(f"{target} has no price(order, gpu, utilization) method", hint=hint)
    return instance
