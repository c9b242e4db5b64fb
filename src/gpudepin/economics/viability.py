"""The viability scorecard: the three pillars a DePIN stands on, from its own figures.

The input is ``NetworkFigures``, plain numbers that the live network (its ledger and chain)
and the simulator can both fill for a period. Each metric is scored against two lines,
``pass_at`` and ``warn_at``; below ``warn_at`` (above, for a metric where lower is better)
it fails. The lines and why:

Hardware accessibility
  ``gpu_classes_online`` pass 3, warn 2 (classes with a GPU online). A buyer needs a choice
  between cheap consumer cards and datacenter cards; one class is a single market.
  ``largest_region_share`` pass <= 0.5, warn <= 0.8. A network whose GPUs mostly sit in one
  region shares that region's power, law and outages; a DePIN's promise is its spread.
  ``price_vs_hyperscaler`` pass <= 0.5, warn <= 0.8 (network median $/h over hyperscaler
  on-demand, worst class with a reference). Buyers accept weaker guarantees only for a
  large saving; market-facts.md puts marketplace A100/H100 medians at 0.2-0.3 of AWS.

Enterprise adoption
  ``enterprise_volume_share`` pass >= 0.3, warn >= 0.1. Enterprise buyers bring steady,
  SLA-backed demand; a network living on consumer spot work swings with hobby demand.
  ``sla_attainment`` pass >= 0.99, warn >= 0.98. 98% uptime over 30 days is where
  datacenter hosts are delisted (market-facts.md); a network at that line is failing its
  enterprise tier.
  ``verification_failure_rate`` pass <= 0.01, warn <= 0.05 (failed audits over audits).
  Above a few percent, redundancy and re-runs eat the price advantage and buyers stop
  trusting results.

Sustainable tokenomics
  ``fee_share_of_provider_income`` pass >= 0.5, warn >= 0.2. When most of what providers
  earn is emissions, GPUs leave when emissions shrink; real fees must carry the majority.
  ``burn_mint_ratio`` pass >= 1.0, warn >= 0.5. At 1 the network is at burn-and-mint
  equilibrium and supply stops growing; below 0.5 emissions more than double the burns.

A metric without data (no SLA leases, no audits, no income) scores ``no_data`` and does not
count. The grade averages 2 points per pass, 1 per warn, 0 per fail: A >= 1.75 with no
fail, B >= 1.25, C >= 0.75, D below; no metric with data gives "n/a".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from gpudepin.core.errors import InvalidInput
from gpudepin.core.hardware import CATALOG
from gpudepin.economics.defaults import HYPERSCALER_USD_PER_HOUR


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    NO_DATA = "no_data"


class Pillar(StrEnum):
    HARDWARE = "hardware accessibility"
    ENTERPRISE = "enterprise adoption"
    TOKENOMICS = "sustainable tokenomics"


@dataclass(frozen=True)
class NetworkFigures:
    """A network's figures over one period; counts and USD, filled by ledger or simulator.

    ``gpus_by_class`` and ``gpus_by_region`` count GPUs online; ``median_price_usd_per_hour``
    is the clearing price per GPU class; volume and income are USD over the period; tokens
    minted and burned are whole tokens over the period.
    """

    gpus_by_class: dict[str, int] = field(default_factory=dict)
    gpus_by_region: dict[str, int] = field(default_factory=dict)
    median_price_usd_per_hour: dict[str, float] = field(default_factory=dict)
    volume_usd: float = 0.0
    enterprise_volume_usd: float = 0.0
    sla_leases: int = 0
    sla_leases_met: int = 0
    audits: int = 0
    audit_failures: int = 0
    provider_income_from_fees_usd: float = 0.0
    provider_income_from_emissions_usd: float = 0.0
    tokens_minted: float = 0.0
    tokens_burned: float = 0.0
    period_days: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "volume_usd",
            "enterprise_volume_usd",
            "sla_leases",
            "sla_leases_met",
            "audits",
            "audit_failures",
            "provider_income_from_fees_usd",
            "provider_income_from_emissions_usd",
            "tokens_minted",
            "tokens_burned",
            "period_days",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise InvalidInput(f"{name} must be a number >= 0, got {value!r}")
        for name in ("gpus_by_class", "gpus_by_region", "median_price_usd_per_hour"):
            table = getattr(self, name)
            if not isinstance(table, dict) or any(
                not isinstance(v, int | float) or not math.isfinite(v) or v < 0
                for v in table.values()
            ):
                raise InvalidInput(f"{name} must map names to numbers >= 0")
        if self.enterprise_volume_usd > self.volume_usd:
            raise InvalidInput("enterprise_volume_usd cannot exceed volume_usd")
        if self.sla_leases_met > self.sla_leases:
            raise InvalidInput("sla_leases_met cannot exceed sla_leases")
        if self.audit_failures > self.audits:
            raise InvalidInput("audit_failures cannot exceed audits")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkFigures:
        """Build from JSON-like data; an unknown key is an error, a missing one its default."""
        if not isinstance(data, dict):
            raise InvalidInput("network figures must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(
                f"unknown network figure(s): {', '.join(unknown)}",
                hint=f"Known keys: {', '.join(sorted(known))}.",
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Metric:
    """One scored figure: its value, the line it was held to and what that means."""

    pillar: Pillar
    name: str
    value: float | None
    threshold: str
    status: Status
    explanation: str


@dataclass(frozen=True)
class Scorecard:
    metrics: tuple[Metric, ...]
    grade: str

    def pillar_status(self, pillar: Pillar) -> Status:
        """The worst status among the pillar's metrics that have data."""
        scored = [m.status for m in self.metrics if m.pillar is pillar]
        for status in (Status.FAIL, Status.WARN, Status.PASS):
            if status in scored:
                return status
        return Status.NO_DATA

    def to_dict(self) -> dict[str, Any]:
        return {
            "grade": self.grade,
            "pillars": {p.value: self.pillar_status(p).value for p in Pillar},
            "metrics": [
                {
                    "pillar": m.pillar.value,
                    "name": m.name,
                    # JSON has no infinity: burning with nothing minted shows as null.
                    "value": m.value if m.value is None or math.isfinite(m.value) else None,
                    "threshold": m.threshold,
                    "status": m.status.value,
                    "explanation": m.explanation,
                }
                for m in self.metrics
            ],
        }


def _score(value: float, pass_at: float, warn_at: float, higher_is_better: bool) -> Status:
    if higher_is_better:
        return Status.PASS if value >= pass_at else Status.WARN if value >= warn_at else Status.FAIL
    return Status.PASS if value <= pass_at else Status.WARN if value <= warn_at else Status.FAIL


def _metric(
    pillar: Pillar,
    name: str,
    value: float | None,
    pass_at: float,
    warn_at: float,
    higher_is_better: bool,
    explanation: str,
    no_data: str,
) -> Metric:
    sign = ">=" if higher_is_better else "<="
    threshold = f"pass {sign} {pass_at:g}, warn {sign} {warn_at:g}"
    if value is None:
        return Metric(pillar, name, None, threshold, Status.NO_DATA, no_data)
    return Metric(
        pillar,
        name,
        value,
        threshold,
        _score(value, pass_at, warn_at, higher_is_better),
        explanation,
    )


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def _hardware(f: NetworkFigures) -> list[Metric]:
    online = {c: n for c, n in f.gpus_by_class.items() if n > 0}
    total_region = sum(f.gpus_by_region.values())
    largest = max(f.gpus_by_region, key=lambda r: f.gpus_by_region[r], default=None)
    share = _ratio(f.gpus_by_region[largest], total_region) if largest is not None else None
    ratios = {
        c: f.median_price_usd_per_hour[c] / ref.value
        for c, ref in HYPERSCALER_USD_PER_HOUR.items()
        if f.median_price_usd_per_hour.get(c, 0) > 0
    }
    worst = max(ratios, key=lambda c: ratios[c], default=None)
    tiers = {CATALOG[c].tier.value for c in online if c in CATALOG}
    return [
        _metric(
            Pillar.HARDWARE,
            "gpu_classes_online",
            float(len(online)) if online else None,
            3,
            2,
            True,
            f"{len(online)} GPU classes online ({', '.join(sorted(online))}); "
            f"tiers: {', '.join(sorted(tiers)) or 'none known'}",
            "no GPU online",
        ),
        _metric(
            Pillar.HARDWARE,
            "largest_region_share",
            share,
            0.5,
            0.8,
            False,
            f"{largest} holds {share or 0:.0%} of {total_region} GPUs "
            f"across {len(f.gpus_by_region)} regions",
            "no GPU has a region",
        ),
        _metric(
            Pillar.HARDWARE,
            "price_vs_hyperscaler",
            ratios[worst] if worst else None,
            0.5,
            0.8,
            False,
            f"{worst} at ${f.median_price_usd_per_hour.get(worst or '', 0):.2f}/h is "
            f"{(ratios[worst] if worst else 0):.0%} of the hyperscaler's on-demand price",
            "no clearing price for a class with a hyperscaler reference (a100-80g, h100-80g)",
        ),
    ]


def _enterprise(f: NetworkFigures) -> list[Metric]:
    share = _ratio(f.enterprise_volume_usd, f.volume_usd)
    sla = _ratio(f.sla_leases_met, f.sla_leases)
    failures = _ratio(f.audit_failures, f.audits)
    return [
        _metric(
            Pillar.ENTERPRISE,
            "enterprise_volume_share",
            share,
            0.3,
            0.1,
            True,
            f"${f.enterprise_volume_usd:,.0f} of ${f.volume_usd:,.0f} volume is enterprise tier",
            "no volume in the period",
        ),
        _metric(
            Pillar.ENTERPRISE,
            "sla_attainment",
            sla,
            0.99,
            0.98,
            True,
            f"{f.sla_leases_met} of {f.sla_leases} SLA leases met their SLA",
            "no SLA lease in the period",
        ),
        _metric(
            Pillar.ENTERPRISE,
            "verification_failure_rate",
            failures,
            0.01,
            0.05,
            False,
            f"{f.audit_failures} of {f.audits} audits failed",
            "no audit in the period",
        ),
    ]


def _tokenomics(f: NetworkFigures) -> list[Metric]:
    income = f.provider_income_from_fees_usd + f.provider_income_from_emissions_usd
    fee_share = _ratio(f.provider_income_from_fees_usd, income)
    if f.tokens_minted > 0:
        burn_mint: float | None = f.tokens_burned / f.tokens_minted
    else:
        # Burning with no emission at all is as sustainable as it gets.
        burn_mint = math.inf if f.tokens_burned > 0 else None
    return [
        _metric(
            Pillar.TOKENOMICS,
            "fee_share_of_provider_income",
            fee_share,
            0.5,
            0.2,
            True,
            f"${f.provider_income_from_fees_usd:,.0f} of ${income:,.0f} provider income "
            "came from buyers' fees, the rest from emissions",
            "no provider income in the period",
        ),
        _metric(
            Pillar.TOKENOMICS,
            "burn_mint_ratio",
            burn_mint,
            1.0,
            0.5,
            True,
            f"{f.tokens_burned:,.0f} tokens burned for {f.tokens_minted:,.0f} minted",
            "no tokens minted or burned in the period",
        ),
    ]


_POINTS = {Status.PASS: 2, Status.WARN: 1, Status.FAIL: 0}


def grade(metrics: tuple[Metric, ...]) -> str:
    """A to D from the metrics with data (see the module docstring); "n/a" without any."""
    scored = [_POINTS[m.status] for m in metrics if m.status is not Status.NO_DATA]
    if not scored:
        return "n/a"
    mean = sum(scored) / len(scored)
    if mean >= 1.75 and 0 not in scored:
        return "A"
    if mean >= 1.25:
        return "B"
    return "C" if mean >= 0.75 else "D"


def scorecard(figures: NetworkFigures) -> Scorecard:
    """Score a network's figures over the three pillars."""
    metrics = tuple(_hardware(figures) + _enterprise(figures) + _tokenomics(figures))
    return Scorecard(metrics, grade(metrics))
