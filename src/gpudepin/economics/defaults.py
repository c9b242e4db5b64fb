"""Every default figure of the economics toolkit, each with where it comes from.

The figures are those of ``shared/data/market-facts.md`` (late 2026). Where the hardware
catalog (``gpudepin.core.hardware``) already carries a figure, it is read from there so the
two never disagree; the source string still names the line of market-facts.md it came
from, or says plainly when a figure is the catalog's own estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import CATALOG, GpuClass, Tier, gpu_class

FACTS = "market-facts.md"


@dataclass(frozen=True)
class Sourced:
    """A default value together with the place it comes from."""

    value: float
    unit: str
    source: str


DAYS_PER_MONTH = Sourced(30.4, "days", f"{FACTS}: Provider profitability, payback formula")

# Consumer cards sit at home (PUE 1); datacenter cards pay the industry-average overhead.
PUE_HOME = Sourced(1.0, "", f"{FACTS}: Provider profitability, PUE 1 at home")
PUE_DATACENTER = Sourced(1.56, "", f"{FACTS}: GPUs, datacenter PUE 1.56 (industry average 2024)")

ELECTRICITY_USD_PER_KWH: dict[str, Sourced] = {
    "us-home": Sourced(
        0.16, "$/kWh", f"{FACTS}: Electricity, US residential 0.155-0.17 (use 0.16)"
    ),
    "us-industrial": Sourced(
        0.08, "$/kWh", f"{FACTS}: Electricity, US industrial 0.06-0.09 (use 0.08)"
    ),
    "eu-home": Sourced(0.31, "$/kWh", f"{FACTS}: Electricity, EU households ~0.31"),
    "germany": Sourced(0.43, "$/kWh", f"{FACTS}: Electricity, Germany ~0.43"),
    "hungary": Sourced(0.11, "$/kWh", f"{FACTS}: Electricity, Hungary ~0.11"),
}
COLOCATION_USD_PER_KW_MONTH = Sourced(
    200.0, "$/kW-month", f"{FACTS}: Electricity, colocation $150-250 per kW-month (midpoint)"
)

FEES: dict[str, Sourced] = {
    "render": Sourced(0.05, "", f"{FACTS}: Fees observed, Render 5% network fee"),
    "io.net": Sourced(0.005, "", f"{FACTS}: Fees observed, io.net 0.25% each side"),
    "io.net-usdc": Sourced(0.025, "", f"{FACTS}: Fees observed, io.net 0.25% each side +2% USDC"),
    "akash-akt": Sourced(0.04, "", f"{FACTS}: Fees observed, Akash 4% (AKT)"),
    "akash-usdc": Sourced(0.20, "", f"{FACTS}: Fees observed, Akash 20% (USDC)"),
    "gensyn": Sourced(0.005, "", f"{FACTS}: Fees observed, Gensyn ~0.5%"),
}
# gpudepin's own take rate (settings.fee_bps = 500) matches Render's observed fee.
DEFAULT_FEE = FEES["render"]
DEFAULT_UTILIZATION = Sourced(
    0.5, "", f"{FACTS}: Provider profitability check figure, 50% utilization"
)

SPOT_RATIO: dict[Tier, Sourced] = {
    Tier.CONSUMER: Sourced(0.6, "", f"{FACTS}: GPUs, spot/on-demand ~0.6 consumer cards"),
    Tier.ENTERPRISE: Sourced(
        0.425, "", f"{FACTS}: GPUs, spot/on-demand ~0.4-0.45 datacenter cards (midpoint)"
    ),
}

RENDER_EMISSION_YEAR1 = Sourced(9.13e6, "tokens/yr", f"{FACTS}: Burn-and-mint, Render year 1")
RENDER_EMISSION_LATER = Sourced(5.9e6, "tokens/yr", f"{FACTS}: Burn-and-mint, Render after year 1")
IONET_EMISSION_DECLINE_PER_MONTH = Sourced(
    0.0102, "/month", f"{FACTS}: Burn-and-mint, io.net emissions decline 1.02%/month"
)
IONET_STAKE_PER_GPU = Sourced(200.0, "IO", f"{FACTS}: Burn-and-mint, io.net stake 200 IO per GPU")
IONET_UNBONDING_DAYS = Sourced(14.0, "days", f"{FACTS}: Burn-and-mint, io.net 14-day unbonding")

HYPERSCALER_USD_PER_HOUR: dict[str, Sourced] = {
    "a100-80g": Sourced(
        5.12, "$/h", f"{FACTS}: GPUs, hyperscaler A100 80GB ~$5.12/h (AWS p4de per GPU)"
    ),
    "h100-80g": Sourced(6.8, "$/h", f"{FACTS}: GPUs, hyperscaler H100 ~$6.8/h after AWS mid-2025"),
}
HYPERSCALER_H100_BEFORE_CUT = Sourced(
    12.29, "$/h", f"{FACTS}: GPUs, hyperscaler H100 ~$12.29/h before AWS's mid-2025 cut"
)

# (low, high) marketplace $/h; the RTX 5090 row gives spot and on-demand instead of a range.
_PRICE_RANGE: dict[str, tuple[float, float, str]] = {
    "rtx3090": (0.15, 0.45, "range 0.15-0.45"),
    "rtx4090": (0.20, 0.80, "range 0.20-0.80"),
    "rtx5090": (0.32, 0.54, "0.32 spot to 0.54 on-demand"),
    "a100-80g": (0.78, 2.70, "range 0.78-2.70"),
    "h100-80g": (1.49, 6.16, "range 1.49-6.16"),
}
# Purchase price per GPU; a range in the table is taken at its midpoint.
_PURCHASE_USD: dict[str, tuple[float, str]] = {
    "rtx3090": (700.0, "700 used"),
    "rtx4090": (1700.0, "1,700"),
    "rtx5090": (1999.0, "1,999"),
    "a100-80g": (11_500.0, "8,000-15,000 (midpoint)"),
    "h100-80g": (27_500.0, "25,000-30,000 (midpoint)"),
}
# market-facts.md gives no idle draw for these: the catalog's own estimate stands.
_IDLE_ESTIMATED = {"cpu", "a100-80g", "h100-80g"}


@dataclass(frozen=True)
class GpuDefaults:
    """The per-GPU figures a profitability estimate starts from."""

    name: str
    tier: Tier
    wall_watts_loaded: Sourced
    wall_watts_idle: Sourced
    median_usd_per_hour: Sourced
    price_low_usd_per_hour: Sourced | None
    price_high_usd_per_hour: Sourced | None
    purchase_usd: Sourced | None
    hyperscaler_usd_per_hour: Sourced | None


def _gpu_defaults(g: GpuClass) -> GpuDefaults:
    row = f"{FACTS}: GPUs table, {g.name}"
    catalog = "core/hardware.py catalog"
    if g.name == "cpu":
        loaded = Sourced(g.wall_watts_loaded, "W", f"{catalog} (estimate, not in {FACTS})")
        median = Sourced(g.median_usd_per_hour, "$/h", f"{catalog} (estimate, not in {FACTS})")
    else:
        note = {"rtx5090": " (estimated)", "h100-80g": " incl. host share"}.get(g.name, "")
        loaded = Sourced(g.wall_watts_loaded, "W", f"{row} wall W loaded{note}")
        median = Sourced(g.median_usd_per_hour, "$/h", f"{row} marketplace median $/h")
    if g.name in _IDLE_ESTIMATED:
        idle = Sourced(g.wall_watts_idle, "W", f"{catalog} (estimate, no idle figure in {FACTS})")
    else:
        idle = Sourced(g.wall_watts_idle, "W", f"{row} wall W idle")
    low = high = purchase = None
    if g.name in _PRICE_RANGE:
        lo, hi, text = _PRICE_RANGE[g.name]
        low = Sourced(lo, "$/h", f"{row} marketplace $/h {text}")
        high = Sourced(hi, "$/h", f"{row} marketplace $/h {text}")
    if g.name in _PURCHASE_USD:
        usd, text = _PURCHASE_USD[g.name]
        purchase = Sourced(usd, "$", f"{row} purchase $ {text}")
    return GpuDefaults(
        name=g.name,
        tier=g.tier,
        wall_watts_loaded=loaded,
        wall_watts_idle=idle,
        median_usd_per_hour=median,
        price_low_usd_per_hour=low,
        price_high_usd_per_hour=high,
        purchase_usd=purchase,
        hyperscaler_usd_per_hour=HYPERSCALER_USD_PER_HOUR.get(g.name),
    )


GPU_DEFAULTS: dict[str, GpuDefaults] = {name: _gpu_defaults(g) for name, g in CATALOG.items()}


def gpu_defaults(name: str) -> GpuDefaults:
    """The default figures for GPU class ``name``; an unknown class is InvalidInput."""
    return GPU_DEFAULTS[gpu_class(name).name]


def electricity(place: str) -> Sourced:
    """The electricity price of ``place`` (us-home, us-industrial, eu-home, germany, hungary)."""
    try:
        return ELECTRICITY_USD_PER_KWH[place.lower()]
    except KeyError:
        known = ", ".join(ELECTRICITY_USD_PER_KWH)
        raise InvalidInput(f"unknown place {place!r}", hint=f"Known places: {known}.") from None


def profit_defaults(gpu: str, place: str | None = None) -> dict[str, Sourced | None]:
    """The default inputs of a profit estimate for ``gpu``, keyed like ``profit()``'s arguments.

    A consumer card is assumed to run at home (US residential power, PUE 1), a datacenter
    card in a datacenter (US industrial power, PUE 1.56), unless ``place`` names the power
    price to use.
    """
    d = gpu_defaults(gpu)
    home = d.tier is Tier.CONSUMER
    if place is not None:
        power = electricity(place)
    else:
        power = ELECTRICITY_USD_PER_KWH["us-home" if home else "us-industrial"]
    return {
        "utilization": DEFAULT_UTILIZATION,
        "price_usd_per_hour": d.median_usd_per_hour,
        "fee": DEFAULT_FEE,
        "electricity_usd_per_kwh": power,
        "pue": PUE_HOME if home else PUE_DATACENTER,
        "capex": d.purchase_usd,
    }


def all_defaults() -> dict[str, Sourced]:
    """Every default figure by a dotted name, for listing with its source."""
    out: dict[str, Sourced] = {
        "days_per_month": DAYS_PER_MONTH,
        "pue.home": PUE_HOME,
        "pue.datacenter": PUE_DATACENTER,
        "fee.default": DEFAULT_FEE,
        "utilization.default": DEFAULT_UTILIZATION,
        "colocation_usd_per_kw_month": COLOCATION_USD_PER_KW_MONTH,
        "emission.render_year1": RENDER_EMISSION_YEAR1,
        "emission.render_later": RENDER_EMISSION_LATER,
        "emission.ionet_decline_per_month": IONET_EMISSION_DECLINE_PER_MONTH,
        "stake.ionet_per_gpu": IONET_STAKE_PER_GPU,
        "stake.ionet_unbonding_days": IONET_UNBONDING_DAYS,
        "hyperscaler.h100_before_cut": HYPERSCALER_H100_BEFORE_CUT,
    }
    out.update({f"electricity.{k}": v for k, v in ELECTRICITY_USD_PER_KWH.items()})
    out.update({f"fee.{k}": v for k, v in FEES.items()})
    out.update({f"spot_ratio.{k.value}": v for k, v in SPOT_RATIO.items()})
    out.update({f"hyperscaler.{k}": v for k, v in HYPERSCALER_USD_PER_HOUR.items()})
    for name, d in GPU_DEFAULTS.items():
        fields = {
            "wall_watts_loaded": d.wall_watts_loaded,
            "wall_watts_idle": d.wall_watts_idle,
            "median_usd_per_hour": d.median_usd_per_hour,
            "price_low_usd_per_hour": d.price_low_usd_per_hour,
            "price_high_usd_per_hour": d.price_high_usd_per_hour,
            "purchase_usd": d.purchase_usd,
        }
        out.update({f"gpu.{name}.{k}": v for k, v in fields.items() if v is not None})
    return out
