"""``gpudepin sim``: simulate a network on the core's rules and score it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gpudepin.cli.common import console, print_json
from gpudepin.core.errors import InvalidInput


def register(app: typer.Typer) -> None:
    app.command("sim")(sim)


def sim(
    providers: Annotated[int, typer.Option(help="Providers in the fleet.")] = 1000,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 30,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed, the same ledger.")] = 1,
    cheaters: Annotated[float, typer.Option(help="Share of providers that cheat.")] = 0.05,
    report: Annotated[
        Path | None, typer.Option(help="Write report.md and PNG charts to this folder.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run the discrete-event simulator: churn, diurnal demand, cheaters, the real rules."""
    from gpudepin.sim.engine import SimParams, simulate
    from gpudepin.sim.report import summary, write_report

    if providers < 1 or days < 1 or not 0 <= cheaters <= 1:
        raise InvalidInput(
            "providers and days must be at least 1, cheaters a share in [0, 1]",
            hint="e.g. gpudepin sim --providers 1000 --days 30 --seed 1",
        )
    with console.status(f"simulating {providers:,} providers for {days} days", spinner="dots"):
        result = simulate(
            SimParams(providers=providers, days=days, seed=seed, cheater_share=cheaters)
        )
    s = summary(result)
    if report is not None:
        s["report"] = str(write_report(result, report))
    if as_json:
        print_json(s)
        return
    table = Table(title=f"simulated network, seed {seed}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "events",
        "transactions",
        "ledger_balanced",
        "mean_utilization",
        "leases",
        "unmet_orders",
        "volume_tokens",
        "minted_tokens",
        "burned_tokens",
        "cheaters",
        "cheaters_caught",
        "cheaters_banned",
        "audits",
        "sla_leases",
        "sla_breaches",
    ):
        v = s[key]
        text = (
            f"{v:.1%}"
            if key == "mean_utilization"
            else f"{v:,.0f}"
            if isinstance(v, float)
            else str(v)
        )
        table.add_row(key.replace("_", " "), text)
    console.print(table)
    console.print(
        "earnings $/GPU-day: "
        + ", ".join(f"{c} {v:.2f}" for c, v in s["earnings_usd_per_gpu_day"].items())
        + " (quoted for an RTX 4090: $3-7)"
    )
    console.print(
        f"viability grade: {s['scorecard']['grade']}; ledger hash {s['ledger_hash'][:16]}"
    )
    if report is not None:
        console.print(f"report: {s['report']}")
