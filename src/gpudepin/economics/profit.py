"""A provider's account for one GPU: revenue, electricity, net and payback.

The formulas are those of ``market-facts.md`` (Provider profitability), per GPU::

    gross/day   = 24 * u * price                 u = share of hours rented
    revenue/day = gross * (1 - fee)
    kWh/day     = 24 * (u * P_load + (1 - u) * P_idle) * PUE
    net/day     = revenue + token_rewards - kWh/day * c_elec - other_opex
    payback     = capex / (30.4 * net/day)       months; none when net <= 0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import GpuClass, gpu_class
from gpudepin.economics.defaults import DAYS_PER_MONTH

HOURS_PER_DAY = 24.0


@dataclass(frozen=True)
class ProfitReport:
    """One GPU's daily and monthly account; USD unless the name says otherwise."""

    gpu: str
    utilization: float
    price_usd_per_hour: float
    fee: float
    electricity_usd_per_kwh: float
    pue: float
    wall_watts_loaded: float
    wall_watts_idle: float
    token_rewards_usd_per_day: float
    other_opex_usd_per_day: float
    capex_usd: float | None
    gross_usd_per_day: float
    fees_usd_per_day: float
    revenue_usd_per_day: float
    kwh_per_day: float
    electricity_usd_per_day: float
    net_usd_per_day: float
    net_usd_per_month: float
    net_usd_per_year: float
    payback_months: float | None

    def to_dict(self) -> dict[str, object]:
        """The report as plain JSON-able values."""
        return asdict(self)


_HINTS = {
    "utilization": "Give the share of hours rented, e.g. 0.5 for 50%.",
    "fee": "Give the marketplace's share of gross, e.g. 0.05 for 5%.",
    "PUE": "1.0 at home; 1.56 is the datacenter average.",
    "price": "Give USD per GPU-hour, e.g. 0.35.",
    "electricity price": "Give USD per kWh, e.g. 0.16.",
}


def _check(value: float, name: str, low: float, high: float) -> float:
    hint = _HINTS.get(name)
    if not math.isfinite(value):
        raise InvalidInput(f"{name} must be a finite number, got {value}", hint=hint)
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low:g} and {high:g}, got {value:g}", hint=hint)
    return float(value)


def profit(
    gpu: str | GpuClass,
    utilization: float,
    price_usd_per_hour: float,
    fee: float,
    electricity_usd_per_kwh: float,
    token_rewards_usd_per_day: float = 0.0,
    other_opex_usd_per_day: float = 0.0,
    pue: float = 1.0,
    capex: float | None = None,
) -> ProfitReport:
    """One GPU's account at a utilization and a price; bad figures raise InvalidInput.

    ``utilization`` is the share of hours rented (0..1), ``fee`` the marketplace's share of
    gross (0..1), ``capex`` what the card cost (USD; None leaves payback unknown).
    """
    g = gpu if isinstance(gpu, GpuClass) else gpu_class(gpu)
    u = _check(utilization, "utilization", 0.0, 1.0)
    price = _check(price_usd_per_hour, "price", 0.0, 1e6)
    fee = _check(fee, "fee", 0.0, 1.0)
    power_price = _check(electricity_usd_per_kwh, "electricity price", 0.0, 1e3)
    rewards = _check(token_rewards_usd_per_day, "token rewards", 0.0, 1e9)
    opex = _check(other_opex_usd_per_day, "other opex", 0.0, 1e9)
    pue = _check(pue, "PUE", 1.0, 10.0)
    capex_usd = None if capex is None else _check(capex, "capex", 0.0, 1e12)

    gross = HOURS_PER_DAY * u * price
    revenue = gross * (1.0 - fee)
    watts = u * g.wall_watts_loaded + (1.0 - u) * g.wall_watts_idle
    kwh = HOURS_PER_DAY * watts / 1000.0 * pue
    power_cost = kwh * power_price
    net = revenue + rewards - power_cost - opex
    days = DAYS_PER_MONTH.value
    payback = None
    if capex_usd is not None and net > 0:
        payback = capex_usd / (days * net)
    return ProfitReport(
        gpu=g.name,
        utilization=u,
        price_usd_per_hour=price,
        fee=fee,
        electricity_usd_per_kwh=power_price,
        pue=pue,
        wall_watts_loaded=float(g.wall_watts_loaded),
        wall_watts_idle=float(g.wall_watts_idle),
        token_rewards_usd_per_day=rewards,
        other_opex_usd_per_day=opex,
        capex_usd=capex_usd,
        gross_usd_per_day=gross,
        fees_usd_per_day=gross - revenue,
        revenue_usd_per_day=revenue,
        kwh_per_day=kwh,
        electricity_usd_per_day=power_cost,
        net_usd_per_day=net,
        net_usd_per_month=net * days,
        net_usd_per_year=net * 365.0,
        payback_months=payback,
    )


@dataclass(frozen=True)
class SensitivityTable:
    """Net USD per day for each utilization (rows) and price (columns)."""

    gpu: str
    utilizations: tuple[float, ...]
    prices_usd_per_hour: tuple[float, ...]
    net_usd_per_day: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict[str, object]:
        """Rows as lists, for JSON."""
        return {
            "gpu": self.gpu,
            "utilizations": list(self.utilizations),
            "prices_usd_per_hour": list(self.prices_usd_per_hour),
            "net_usd_per_day": [list(row) for row in self.net_usd_per_day],
        }


def sensitivity(
    gpu: str | GpuClass,
    utilizations: Sequence[float],
    prices: Sequence[float],
    fee: float,
    electricity_usd_per_kwh: float,
    token_rewards_usd_per_day: float = 0.0,
    other_opex_usd_per_day: float = 0.0,
    pue: float = 1.0,
) -> SensitivityTable:
    """Net per day over a grid of utilizations by prices, everything else held fixed."""
    if not utilizations or not prices:
        raise InvalidInput("sensitivity needs at least one utilization and one price")
    g = gpu if isinstance(gpu, GpuClass) else gpu_class(gpu)
    rows = tuple(
        tuple(
            profit(
                g,
                u,
                p,
                fee,
                electricity_usd_per_kwh,
                token_rewards_usd_per_day,
                other_opex_usd_per_day,
                pue,
            ).net_usd_per_day
            for p in prices
        )
        for u in utilizations
    )
    return SensitivityTable(g.name, tuple(utilizations), tuple(prices), rows)


def profit_chart(report: ProfitReport, path: str | Path) -> Path:
    """Draw gross, revenue, power cost and net per day over utilization 0..1 as a PNG.

    The report's own utilization is marked; every other input is the report's.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [i / 50 for i in range(51)]
    points = [
        profit(
            report.gpu,
            u,
            report.price_usd_per_hour,
            report.fee,
            report.electricity_usd_per_kwh,
            report.token_rewards_usd_per_day,
            report.other_opex_usd_per_day,
            report.pue,
        )
        for u in steps
    ]
    xs = [u * 100 for u in steps]
    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        ax.plot(xs, [p.gross_usd_per_day for p in points], label="gross")
        ax.plot(xs, [p.revenue_usd_per_day for p in points], label="revenue after fee")
        ax.plot(xs, [p.electricity_usd_per_day for p in points], label="electricity")
        ax.plot(xs, [p.net_usd_per_day for p in points], label="net", linewidth=2.5)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.axvline(report.utilization * 100, color="black", linestyle=":", linewidth=1)
        ax.annotate(
            rf"net \${report.net_usd_per_day:.2f}/day",
            (report.utilization * 100, report.net_usd_per_day),
            textcoords="offset points",
            xytext=(6, 8),
        )
        ax.set_xlabel("utilization (% of hours rented)")
        ax.set_ylabel("USD per day")
        ax.set_title(
            rf"{report.gpu} at \${report.price_usd_per_hour:.2f}/h, fee {report.fee:.0%}, "
            rf"power \${report.electricity_usd_per_kwh:.2f}/kWh"
        )
        ax.legend()
        ax.grid(alpha=0.3)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
