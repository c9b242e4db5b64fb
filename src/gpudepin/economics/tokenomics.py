"""A burn-and-mint equilibrium (BME) token, projected month by month.

The rules are those of ``market-facts.md`` (Burn-and-mint equilibrium, Render style)::

    Burn_t = (1 - fee) * D_t / P_t     D_t = buyers' USD demand in month t, P_t = token price
    Mint_t = fixed emission schedule, independent of burns
    S_t+1  = S_t + Mint_t - Burn_t
    P*_t   = (1 - fee) * D_t / Mint_t  the price at which burns equal mints

Buyers buy tokens and burn them for work; the protocol keeps ``fee`` of the USD demand;
providers are paid only from the mint. Their USD income is therefore ``Mint_t * P_t``, of
which ``min(Burn_t, Mint_t) * P_t`` is backed by what buyers burned (called "from fees" here,
as in the viability scorecard) and the rest, ``max(0, Mint_t - Burn_t) * P_t``, is net new
emission: a subsidy paid for by holders' dilution.

The price path is this model's own assumption, not a market fact: each month the price
closes a share ``damping`` of its gap to the month's equilibrium,
``P_t+1 = P_t + damping * (P*_t - P_t)``. Damping 1 jumps to equilibrium at once; small
damping stands for a market slow to notice demand. Nothing is random: the same parameters
give the same path.

Burns can never exceed the tokens that exist (``S_t + Mint_t``); a burn that would is cut
there, and the cut burn is what the supply equation uses, so supply is conserved exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from gpudepin.core.errors import InvalidInput
from gpudepin.economics.defaults import (
    DEFAULT_FEE,
    IONET_EMISSION_DECLINE_PER_MONTH,
    RENDER_EMISSION_LATER,
    RENDER_EMISSION_YEAR1,
)


class Scenario(StrEnum):
    FLAT = "flat"
    GROWTH = "growth"
    BUST = "bust"


class EmissionSchedule(Protocol):
    @property
    def name(self) -> str: ...

    def tokens_in_month(self, month: int) -> float:
        """Tokens minted in month ``month`` (0-based)."""
        ...


@dataclass(frozen=True)
class RenderLikeSchedule:
    """A fixed yearly emission for year 1, then a lower fixed one (Render: 9.13M, then 5.9M)."""

    year1_tokens: float = RENDER_EMISSION_YEAR1.value
    later_tokens_per_year: float = RENDER_EMISSION_LATER.value
    name: str = "render"

    def tokens_in_month(self, month: int) -> float:
        return (self.year1_tokens if month < 12 else self.later_tokens_per_year) / 12.0


@dataclass(frozen=True)
class DecliningSchedule:
    """Emissions that shrink by a fixed share every month (io.net: 1.02%/month)."""

    first_month_tokens: float = RENDER_EMISSION_YEAR1.value / 12.0
    decline_per_month: float = IONET_EMISSION_DECLINE_PER_MONTH.value
    name: str = "declining"

    def tokens_in_month(self, month: int) -> float:
        return self.first_month_tokens * (1.0 - self.decline_per_month) ** month


@dataclass(frozen=True)
class TokenomicsParams:
    """The inputs of a projection. Demand, supply, price and damping are assumptions.

    ``growth_per_month`` applies to the growth scenario and to the bust scenario before
    ``bust_month``; at ``bust_month`` the bust scenario's demand falls by ``bust_drop`` of
    its level and stays flat.
    """

    months: int = 36
    scenario: Scenario = Scenario.GROWTH
    initial_demand_usd_per_month: float = 500_000.0
    growth_per_month: float = 0.05
    bust_month: int = 12
    bust_drop: float = 0.8
    fee: float = DEFAULT_FEE.value
    initial_supply: float = 500e6
    initial_price_usd: float = 1.0
    damping: float = 0.25
    emission: EmissionSchedule = field(default_factory=RenderLikeSchedule)

    def validate(self) -> None:
        """Raise InvalidInput for a parameter the model cannot run with."""
        checks = (
            (1 <= self.months <= 1200, f"months must be 1..1200, got {self.months}"),
            (
                _finite(self.initial_demand_usd_per_month)
                and self.initial_demand_usd_per_month > 0,
                "initial demand must be a positive USD amount per month",
            ),
            (
                _finite(self.growth_per_month) and -1 < self.growth_per_month <= 10,
                f"growth per month must be above -1 and at most 10, got {self.growth_per_month}",
            ),
            (self.bust_month >= 0, f"bust month must be 0 or later, got {self.bust_month}"),
            (
                _finite(self.bust_drop) and 0 <= self.bust_drop < 1,
                f"bust drop must be in [0, 1), got {self.bust_drop}",
            ),
            (_finite(self.fee) and 0 <= self.fee < 1, f"fee must be in [0, 1), got {self.fee}"),
            (
                _finite(self.initial_supply) and self.initial_supply >= 0,
                "initial supply must be zero or more tokens",
            ),
            (
                _finite(self.initial_price_usd) and self.initial_price_usd > 0,
                "initial price must be a positive USD amount",
            ),
            (
                _finite(self.damping) and 0 < self.damping <= 1,
                f"damping must be in (0, 1], got {self.damping}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise InvalidInput(message, hint="See `gpudepin economics tokenomics --help`.")
        for m in range(self.months):
            if not self.emission.tokens_in_month(m) > 0:
                raise InvalidInput(f"the emission schedule mints nothing in month {m}")


def _finite(x: float) -> bool:
    return math.isfinite(x)


def demand(params: TokenomicsParams, month: int) -> float:
    """Buyers' USD demand in ``month`` under the scenario."""
    d0, g = params.initial_demand_usd_per_month, params.growth_per_month
    if params.scenario is Scenario.FLAT:
        return d0
    if params.scenario is Scenario.GROWTH or month < params.bust_month:
        return d0 * (1.0 + g) ** month
    peak = d0 * (1.0 + g) ** params.bust_month
    return peak * (1.0 - params.bust_drop)


def equilibrium_price(fee: float, demand_usd: float, minted_tokens: float) -> float:
    """P* = (1 - fee) * D / Mint: the price at which burns exactly offset mints."""
    if minted_tokens <= 0:
        raise InvalidInput("equilibrium price needs a positive mint")
    return (1.0 - fee) * demand_usd / minted_tokens


@dataclass(frozen=True)
class Month:
    """One month of the projection; token amounts in whole tokens, money in USD."""

    month: int
    demand_usd: float
    price_usd: float
    equilibrium_price_usd: float
    minted: float
    burned: float
    supply_start: float
    supply_end: float
    protocol_fees_usd: float
    provider_income_usd: float
    provider_income_from_fees_usd: float
    provider_income_from_emissions_usd: float

    @property
    def burn_mint_ratio(self) -> float:
        return self.burned / self.minted


@dataclass(frozen=True)
class TokenomicsRun:
    params: TokenomicsParams
    months: tuple[Month, ...]

    @property
    def total_minted(self) -> float:
        return sum(m.minted for m in self.months)

    @property
    def total_burned(self) -> float:
        return sum(m.burned for m in self.months)

    @property
    def fee_share_of_provider_income(self) -> float:
        """Share of providers' USD income over the run that buyers' burns backed."""
        income = sum(m.provider_income_usd for m in self.months)
        return sum(m.provider_income_from_fees_usd for m in self.months) / income

    @property
    def crossover_month(self) -> int | None:
        """The first month whose burns reach its mints (supply stops growing), if any."""
        return next((m.month for m in self.months if m.burned >= m.minted), None)

    def summary(self) -> dict[str, object]:
        """Headline figures of the run, JSON-able."""
        first, last = self.months[0], self.months[-1]
        return {
            "scenario": self.params.scenario.value,
            "months": len(self.months),
            "emission": self.params.emission.name,
            "fee": self.params.fee,
            "total_minted": self.total_minted,
            "total_burned": self.total_burned,
            "burn_mint_ratio": self.total_burned / self.total_minted,
            "initial_supply": first.supply_start,
            "final_supply": last.supply_end,
            "supply_change_pct": (
                100.0 * (last.supply_end - first.supply_start) / first.supply_start
                if first.supply_start
                else None
            ),
            "initial_price_usd": first.price_usd,
            "final_price_usd": last.price_usd,
            "final_equilibrium_price_usd": last.equilibrium_price_usd,
            "fee_share_of_provider_income": self.fee_share_of_provider_income,
            "crossover_month": self.crossover_month,
        }

    def to_dict(self) -> dict[str, object]:
        """Summary and every month, JSON-able."""
        return {
            "summary": self.summary(),
            "months": [asdict(m) | {"burn_mint_ratio": m.burn_mint_ratio} for m in self.months],
        }


def simulate(params: TokenomicsParams) -> TokenomicsRun:
    """Project the token over ``params.months`` months; deterministic."""
    params.validate()
    supply, price = params.initial_supply, params.initial_price_usd
    months: list[Month] = []
    for t in range(params.months):
        d = demand(params, t)
        mint = params.emission.tokens_in_month(t)
        burn = min((1.0 - params.fee) * d / price, supply + mint)
        p_star = equilibrium_price(params.fee, d, mint)
        income = mint * price
        backed = min(burn, mint) * price
        supply_end = supply + mint - burn
        months.append(
            Month(
                month=t,
                demand_usd=d,
                price_usd=price,
                equilibrium_price_usd=p_star,
                minted=mint,
                burned=burn,
                supply_start=supply,
                supply_end=supply_end,
                protocol_fees_usd=params.fee * d,
                provider_income_usd=income,
                provider_income_from_fees_usd=backed,
                provider_income_from_emissions_usd=income - backed,
            )
        )
        supply = supply_end
        price = price + params.damping * (p_star - price)
    return TokenomicsRun(params, tuple(months))


def tokenomics_chart(run: TokenomicsRun, path: str | Path) -> Path:
    """Three panels as a PNG: price vs equilibrium, mint/burn and supply, provider income."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [m.month for m in run.months]
    fig, (ax_price, ax_tokens, ax_income) = plt.subplots(3, 1, figsize=(9, 11), sharex=True)
    try:
        ax_price.plot(xs, [m.price_usd for m in run.months], label="token price")
        ax_price.plot(
            xs, [m.equilibrium_price_usd for m in run.months], "--", label="equilibrium P*"
        )
        ax_price.set_ylabel("USD per token")
        ax_demand = ax_price.twinx()
        ax_demand.plot(
            xs, [m.demand_usd / 1e6 for m in run.months], color="grey", alpha=0.5, label="demand"
        )
        ax_demand.set_ylabel("demand, M USD/month")
        handles = ax_price.get_legend_handles_labels()[0] + ax_demand.get_legend_handles_labels()[0]
        ax_price.legend(handles=handles, loc="upper left")
        ax_price.set_title(
            f"Burn-and-mint, {run.params.scenario.value} scenario, fee {run.params.fee:.0%}"
        )

        ax_tokens.plot(xs, [m.minted / 1e6 for m in run.months], label="minted")
        ax_tokens.plot(xs, [m.burned / 1e6 for m in run.months], label="burned")
        ax_tokens.set_ylabel("M tokens/month")
        ax_supply = ax_tokens.twinx()
        ax_supply.plot(
            xs, [m.supply_end / 1e6 for m in run.months], color="black", alpha=0.6, label="supply"
        )
        ax_supply.set_ylabel("supply, M tokens")
        handles = (
            ax_tokens.get_legend_handles_labels()[0] + ax_supply.get_legend_handles_labels()[0]
        )
        ax_tokens.legend(handles=handles, loc="upper left")

        fees = [m.provider_income_from_fees_usd / 1e6 for m in run.months]
        emissions = [m.provider_income_from_emissions_usd / 1e6 for m in run.months]
        ax_income.stackplot(xs, fees, emissions, labels=["backed by burns", "net emissions"])
        ax_income.set_ylabel("provider income, M USD/month")
        ax_income.set_xlabel("month")
        ax_income.legend(loc="upper left")
        for ax in (ax_price, ax_tokens, ax_income):
            ax.grid(alpha=0.3)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=90, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
