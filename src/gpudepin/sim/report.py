"""A simulation's figures, its viability scorecard, PNG charts and a Markdown report."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from gpudepin.core.hardware import CATALOG, Tier
from gpudepin.core.ledger import BURNED, imbalances
from gpudepin.core.money import UNIT
from gpudepin.economics.defaults import HYPERSCALER_USD_PER_HOUR
from gpudepin.economics.viability import NetworkFigures, scorecard
from gpudepin.sim.engine import CLASS_MIX, SimResult


def _tokens(units: float) -> float:
    return float(units) / float(UNIT)


def mean_price(result: SimResult, cls: str) -> float | None:
    """The mean $/h leases of ``cls`` cleared at over the run."""
    total = sum(d.price_sum.get(cls, 0.0) for d in result.days)
    n = sum(d.price_n.get(cls, 0) for d in result.days)
    return total / n if n else None


def network_figures(result: SimResult) -> NetworkFigures:
    """The simulated network's ``NetworkFigures`` over the whole run (USD at the run's
    token price)."""
    usd = result.params.token_usd
    days = result.days
    volume = sum(d.volume for d in days)
    prices: dict[str, float] = {}
    for cls in CLASS_MIX:
        price = mean_price(result, cls)
        if price is not None:
            prices[cls] = price
    fees_income = sum(sum(d.earned.values()) for d in days) - sum(d.minted for d in days)
    enterprise = sum(
        d.volume_by_class.get(c, 0)
        for d in days
        for c in CLASS_MIX
        if CATALOG[c].tier is Tier.ENTERPRISE
    )
    return NetworkFigures(
        gpus_by_class=result.classes_online,
        gpus_by_region=result.regions_online,
        median_price_usd_per_hour=prices,
        volume_usd=_tokens(volume) * usd,
        enterprise_volume_usd=_tokens(enterprise) * usd,
        sla_leases=sum(d.sla_leases for d in days),
        sla_leases_met=sum(d.sla_leases - d.sla_breaches for d in days),
        audits=sum(d.audits for d in days),
        audit_failures=sum(d.audit_failures for d in days),
        provider_income_from_fees_usd=max(0.0, _tokens(fees_income) * usd),
        provider_income_from_emissions_usd=_tokens(sum(d.minted for d in days)) * usd,
        tokens_minted=_tokens(sum(d.minted for d in days)),
        tokens_burned=_tokens(sum(d.burned for d in days)),
        period_days=float(len(days)),
    )


def summary(result: SimResult) -> dict[str, Any]:
    """Headline figures of a run, JSON-able."""
    days = result.days
    usd = result.params.token_usd
    earnings = {
        cls: _tokens(sum(d.earned.get(cls, 0) for d in days))
        * usd
        / max(1e-9, sum(d.gpu_days.get(cls, 0.0) for d in days))
        for cls in CLASS_MIX
    }
    card = scorecard(network_figures(result))
    return {
        "providers": result.params.providers,
        "days": result.params.days,
        "seed": result.params.seed,
        "events": result.events,
        "transactions": result.transactions,
        "ledger_hash": result.ledger_hash(),
        "journal_digest": result.journal_digest,
        "ledger_balanced": not imbalances(result.balances),
        "mean_utilization": statistics.fmean(result.hourly_utilization or [0.0]),
        "leases": sum(d.leases for d in days),
        "unmet_orders": sum(d.unmet for d in days),
        "volume_tokens": _tokens(sum(d.volume for d in days)),
        "minted_tokens": _tokens(sum(d.minted for d in days)),
        "burned_tokens": _tokens(result.balances.get(BURNED, 0)),
        "mean_price_usd_per_hour": {c: mean_price(result, c) for c in CLASS_MIX},
        "earnings_usd_per_gpu_day": earnings,
        "cheaters": result.cheaters,
        "cheaters_caught": sum(d.cheaters_caught for d in days),
        "cheaters_banned": result.cheaters_banned,
        "audits": sum(d.audits for d in days),
        "audit_failures": sum(d.audit_failures for d in days),
        "sla_leases": sum(d.sla_leases for d in days),
        "sla_breaches": sum(d.sla_breaches for d in days),
        "scorecard": card.to_dict(),
    }


def charts(result: SimResult, out: Path) -> list[Path]:
    """The report's PNG charts, written to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    days = result.days
    xs = [d.day + 1 for d in days]
    usd = result.params.token_usd
    made: list[Path] = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        made.append(path)

    fig, ax = plt.subplots(figsize=(8, 3))
    hours = [h / 24 for h in range(len(result.hourly_utilization))]
    ax.plot(hours, result.hourly_utilization, lw=0.8)
    ax.set(title="Utilization (leased / online GPUs)", xlabel="day", ylim=(0, 1))
    save(fig, "utilization.png")

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for cls in CLASS_MIX:
        ys = [
            d.price_sum.get(cls, 0) / d.price_n[cls] if d.price_n.get(cls) else float("nan")
            for d in days
        ]
        ax.plot(xs, ys, label=cls)
    ax.set(title="Mean clearing price, $/GPU-hour", xlabel="day", yscale="log")
    ax.legend(fontsize=7)
    save(fig, "prices.png")

    fig, ax = plt.subplots(figsize=(8, 3.5))
    for cls in CLASS_MIX:
        ys = [
            _tokens(d.earned.get(cls, 0)) * usd / d.gpu_days[cls]
            if d.gpu_days.get(cls)
            else float("nan")
            for d in days
        ]
        ax.plot(xs, ys, label=cls)
    ax.axhspan(3, 7, color="orange", alpha=0.15, label="quoted RTX 4090 $3-7/day")
    ax.set(title="Provider earnings per GPU-day (fees + emissions), $", xlabel="day")
    ax.legend(fontsize=7)
    save(fig, "earnings.png")

    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [c for c in HYPERSCALER_USD_PER_HOUR if mean_price(result, c) is not None]
    ax.bar(
        [f"{c}\nnetwork" for c in names], [mean_price(result, c) or 0 for c in names], color="C0"
    )
    ax.bar(
        [f"{c}\nhyperscaler" for c in names],
        [HYPERSCALER_USD_PER_HOUR[c].value for c in names],
        color="C3",
    )
    ax.set(title="Buyer cost vs hyperscaler on-demand, $/GPU-hour")
    save(fig, "buyer_cost.png")

    fig, ax = plt.subplots(figsize=(8, 3))
    caught, acc = [], 0
    for d in days:
        acc += d.cheaters_caught
        caught.append(acc)
    ax.plot(xs, caught, label="cheaters caught")
    ax.axhline(result.cheaters, color="grey", ls="--", label="cheaters in the fleet")
    ax.set(title="Cheaters caught (cumulative)", xlabel="day")
    ax.legend(fontsize=7)
    save(fig, "cheaters.png")

    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(xs, [d.sla_breaches for d in days], label="breaches")
    ax.plot(xs, [d.sla_leases for d in days], color="C1", label="enterprise leases ended")
    ax.set(title="SLA breaches per day", xlabel="day")
    ax.legend(fontsize=7)
    save(fig, "sla.png")

    fig, ax = plt.subplots(figsize=(8, 3))
    minted, burned, m, b = [], [], 0.0, 0.0
    for d in days:
        m += _tokens(d.minted)
        b += _tokens(d.burned)
        minted.append(m)
        burned.append(b)
    ax.plot(xs, minted, label="minted")
    ax.plot(xs, burned, label="burned")
    ax.plot(xs, [x - y for x, y in zip(minted, burned, strict=True)], label="net new supply")
    ax.set(title="Token supply change (cumulative tokens)", xlabel="day")
    ax.legend(fontsize=7)
    save(fig, "supply.png")
    return made


def write_report(result: SimResult, out: Path) -> Path:
    """Charts plus ``report.md`` in ``out``; returns the report's path."""
    pngs = charts(result, out)
    s = summary(result)
    lines = [
        f"# Simulated network: {s['providers']:,} providers, {s['days']} days, seed {s['seed']}",
        "",
        f"- events {s['events']:,}, ledger transactions {s['transactions']:,}; "
        f"books balanced: {s['ledger_balanced']}; ledger hash `{s['ledger_hash'][:16]}`",
        f"- mean utilization {s['mean_utilization']:.1%}; leases {s['leases']:,}; "
        f"orders left unmet {s['unmet_orders']:,}",
        f"- volume {s['volume_tokens']:,.0f} tokens; minted {s['minted_tokens']:,.0f}; "
        f"burned {s['burned_tokens']:,.0f}",
        f"- cheaters {s['cheaters']}: caught {s['cheaters_caught']}, banned "
        f"{s['cheaters_banned']}; audits {s['audits']:,}, failed {s['audit_failures']:,}",
        f"- SLA: {s['sla_breaches']} breaches in {s['sla_leases']:,} enterprise leases",
        "",
        "| class | mean price $/h | earnings $/GPU-day |",
        "|---|---|---|",
    ]
    for cls in CLASS_MIX:
        price = s["mean_price_usd_per_hour"][cls]
        lines.append(
            f"| {cls} | {'-' if price is None else f'{price:.2f}'} | "
            f"{s['earnings_usd_per_gpu_day'][cls]:.2f} |"
        )
    card = s["scorecard"]
    lines += [
        "",
        "Often quoted for an RTX 4090: $3-7/day (gross, token-inclusive; market-facts.md).",
        "",
        f"## Viability scorecard: grade {card['grade']}",
        "",
        "| pillar | metric | value | status | why |",
        "|---|---|---|---|---|",
    ]
    for m in card["metrics"]:
        value = "-" if m["value"] is None else f"{m['value']:.3g}"
        lines.append(
            f"| {m['pillar']} | {m['name']} | {value} | {m['status']} | {m['explanation']} |"
        )
    lines.append("")
    for p in pngs:
        lines += [f"![{p.stem}]({p.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
