"""``gpudepin stats``: the dashboard's headline figures in the terminal."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gpudepin.cli.common import console, print_json, state

# (key in the headline, label, share?)
ROWS = (
    ("providers_online", "providers online", False),
    ("gpus_online", "GPUs online", False),
    ("utilization", "utilization (leased + busy) / online", True),
    ("jobs_completed", "jobs completed", False),
    ("jobs_24h", "jobs submitted, 24 h", False),
    ("leases_24h", "leases started, 24 h", False),
    ("tasks_accepted", "tasks accepted", False),
    ("volume_24h", "volume paid, 24 h (tokens)", False),
    ("fees_24h", "protocol fees, 24 h", False),
    ("burned_24h", "tokens burned, 24 h", False),
    ("minted_24h", "emissions, 24 h", False),
    ("audits_24h", "audits, 24 h", False),
    ("audit_failures_24h", "failed audits, 24 h", False),
    ("slashes_24h", "slashes, 24 h", False),
    ("sla_breaches_24h", "SLA credits paid, 24 h", False),
)


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)


def _cell(value: Any, share: bool) -> str:
    if value is None:
        return "-"
    return f"{float(value):.0%}" if share else str(value)


def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The network's headline figures, now and 24 h ago (the dashboard's top row)."""
    st = state(ctx)
    with st.client() as client:
        data = client.stats()
        url = client.base_url
    if as_json:
        print_json(data)
        return
    now, ago = data["headline"], data["ago_24h"] or {}
    table = Table(title="gpudepin network")
    table.add_column("figure")
    table.add_column("now", justify="right")
    table.add_column("24 h ago", justify="right")
    for key, label, share in ROWS:
        table.add_row(label, _cell(now.get(key), share), _cell(ago.get(key), share))
    console.print(table)
    if now["gpus_by_class"]:
        console.print(
            "GPUs by class: " + ", ".join(f"{c} {n}" for c, n in now["gpus_by_class"].items())
        )
    earnings = data["earnings_per_gpu_day"]
    if earnings:
        low, high = data["quoted_rtx4090_usd_per_day"]
        console.print(
            "earned per GPU-day, 24 h: "
            + ", ".join(f"{c} ${e['usd_per_gpu_day']:.2f}" for c, e in earnings.items())
            + f" (often quoted for an RTX 4090: ${low:.0f}-{high:.0f}/day)"
        )
    console.print(f"dashboard: {url}/")
