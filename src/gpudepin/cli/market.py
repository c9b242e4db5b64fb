"""Market commands: ``quote``, ``market``, ``lease create|list|show|close``."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table

from gpudepin.cli.common import console, print_json, state
from gpudepin.client import Client
from gpudepin.core.errors import InvalidInput, NoMatch

quote_app = typer.Typer(help="Would an order clear now, at what price? Or why not.")
lease_app = typer.Typer(help="Rent GPUs by the second.", no_args_is_help=True)

Gpu = Annotated[str | None, typer.Option("--gpu", help="GPU class, e.g. rtx4090 (or cpu).")]
Regions = Annotated[
    list[str] | None, typer.Option("--region", help="Allowed region (repeatable), e.g. eu-west.")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(app: typer.Typer) -> None:
    app.add_typer(quote_app, name="quote")
    app.add_typer(lease_app, name="lease")
    app.command("market")(market)


def count_frames(frames: str, chunk: int = 1) -> int:
    """Frames named by a range text such as ``1-24`` or ``1,5,9-12`` (one unit each)."""
    from gpudepin.workloads.render import parse_frames

    if chunk < 1:
        raise InvalidInput("chunk: must be at least 1")
    return len(parse_frames(frames, 0, 10**9))


def _hours(hours: float) -> int:
    if hours <= 0:
        raise InvalidInput(f"hours: must be positive, got {hours:g}", field="duration_s")
    return round(hours * 3600)


def print_quote(q: dict[str, Any]) -> None:
    """A quote as a buyer reads it: price and fee if it clears, the reasons if not."""
    if q["instant"]:
        c = q["at_clearing"]
        console.print(
            f"clears at once at {q['clearing_price']}: cost {c['cost']} "
            f"(provider gets {c['provider_gets']}, fee {c['fee']} = {c['fee_bps'] / 100:g}%)"
        )
    elif q["would_match"]:
        console.print(
            f"no standing ask; {q['funnel'].get('with free capacity', 0)} eligible providers "
            f"will see it for {q['bid_window_s']:g} s and may bid up to {q['max_price']}"
        )
    else:
        console.print(f"[red]would not clear:[/red] {'; '.join(q['reasons'])}", highlight=False)
        if q.get("suggested_max_price"):
            console.print(f"it would clear with a maximum of {q['suggested_max_price']}")
    m = q["at_max"]
    console.print(
        f"escrow locked {q['escrow']}; at the maximum the fee is {m['fee']} "
        f"({m['fee_bps'] / 100:g}% of every payout)"
    )
    funnel = " → ".join(f"{k} {v}" for k, v in q["funnel"].items())
    console.print(f"[dim]{funnel}[/dim]")


@quote_app.command("render")
def quote_render(
    ctx: typer.Context,
    frames: Annotated[str, typer.Option(help="Frame range, e.g. 1-24.")] = "1-24",
    max_price_per_frame: Annotated[
        str, typer.Option("--max-price-per-frame", "--price-per-frame", help="Tokens per frame.")
    ] = "0.01",
    gpu: Gpu = None,
    region: Regions = None,
    as_json: AsJson = False,
) -> None:
    """Quote a render job before submitting it."""
    with state(ctx).client() as client:
        q = client.quote(
            "batch", max_price_per_frame, count_frames(frames), gpu_class=gpu, regions=region
        )
    print_json(q) if as_json else print_quote(q)


@quote_app.command("lease")
def quote_lease(
    ctx: typer.Context,
    gpu: Gpu = None,
    hours: Annotated[float, typer.Option(help="How long, in hours.")] = 1.0,
    max_price: Annotated[str, typer.Option(help="Most tokens per GPU-hour.")] = "1",
    gpus: Annotated[int, typer.Option(help="GPUs on one machine.")] = 1,
    region: Regions = None,
    as_json: AsJson = False,
) -> None:
    """Quote a GPU lease before creating it."""
    with state(ctx).client() as client:
        q = client.quote(
            "lease", max_price, gpus, duration_s=_hours(hours), gpu_class=gpu, regions=region
        )
    print_json(q) if as_json else print_quote(q)


def market(ctx: typer.Context, as_json: AsJson = False) -> None:
    """Market data: best standing asks and recent clearing prices per GPU class and region."""
    with state(ctx).client() as client:
        data = client.market()
    if as_json:
        print_json(data)
        return
    console.print(f"{data['providers_online']} providers online, {data['open_orders']} open orders")
    asks = Table(
        "kind", "gpu", "region", "best ask", "providers", "capacity", title="standing asks"
    )
    for a in data["best_asks"]:
        asks.add_row(
            a["kind"],
            a["gpu_class"],
            a["region"],
            a["price"],
            str(a["providers"]),
            str(a["capacity"]),
        )
    console.print(asks)
    recent = Table(
        "kind", "gpu", "region", "last", "low", "high", "vwap", "prints", title="cleared"
    )
    for r in data["recent"]:
        recent.add_row(
            r["kind"],
            r["gpu_class"],
            r["region"],
            r["last"],
            r["low"],
            r["high"],
            r["vwap"],
            str(r["prints"]),
        )
    console.print(recent)


def print_auction(m: dict[str, Any]) -> None:
    """A job's auction in a few lines (for ``jobs show``)."""
    line = f"auction {m['order_state']}: {m['bids']} bids, max {m['max_price']}/unit"
    if m["clearing_price"]:
        line += f", clearing price {m['clearing_price']}"
    console.print(line)
    for w in m["winners"]:
        how = "instant spot" if w["instant"] else "auction"
        console.print(
            f"  {w['provider']} wins {w['quantity']} at {w['price']} ({how}, {w['state']})"
        )
    if m["reason"]:
        console.print(f"  [red]why no match:[/red] {m['reason']}", highlight=False)


def wait_for_auction(client: Client, lease_id: str, timeout: float = 3600.0) -> dict[str, Any]:
    """Wait until a lease's auction is decided; NoMatch with the reason if it fails."""
    deadline = time.monotonic() + timeout
    with console.status("auction running…"):
        while True:
            lease = client.lease(lease_id)
            if lease["order_state"] != "open" or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # polling a remote API
    if lease["order_state"] == "no_match":
        raise NoMatch(f"lease {lease_id} found no provider: {lease['reason']}")
    return lease


def print_lease(lease: dict[str, Any]) -> None:
    console.print(
        f"[bold]{lease['id']}[/bold] {lease['state']} — {lease['gpu_class'] or 'any GPU'}, "
        f"{lease['duration_s']} s, max {lease['max_price_per_hour']}/GPU-hour"
    )
    current = lease.get("lease")
    if current is None:
        if lease.get("reason"):
            console.print(f"[red]why no match:[/red] {lease['reason']}", highlight=False)
        return
    console.print(
        f"provider {current['provider']} at {current['price_per_hour']}/GPU-hour"
        f" · escrow {current['escrow']}"
        + (f" · workload {current['workload']}" if current["workload"] else "")
    )
    console.print(
        f"billed {current['billed']} for {current['billed_seconds']} s delivered · "
        f"fee {current['fees']} ({lease.get('fee_bps', 500) / 100:g}%) · "
        f"provider earned {current['provider_earned']}"
    )
    if current["close_reason"]:
        console.print(f"ended: {current['close_reason']}")


@lease_app.command("create")
def lease_create(
    ctx: typer.Context,
    gpu: Gpu = None,
    hours: Annotated[float, typer.Option(help="How long, in hours.")] = 1.0,
    max_price: Annotated[str, typer.Option(help="Most tokens per GPU-hour.")] = "1",
    gpus: Annotated[int, typer.Option(help="GPUs on one machine.")] = 1,
    region: Regions = None,
    min_vram: Annotated[float, typer.Option(help="Minimum VRAM per GPU, GB.")] = 0.0,
    workload: Annotated[str, typer.Option(help="What runs on it (empty: bare GPU).")] = "",
    serve: Annotated[
        str | None,
        typer.Option(help="Serve a model on it: embeddings, or a model.onnx (docs/ai.md)."),
    ] = None,
    tier: Annotated[str | None, typer.Option(help="consumer or enterprise.")] = None,
    uptime: Annotated[
        float | None, typer.Option(help="Uptime SLA target in percent (enterprise: 99.9).")
    ] = None,
    failover: Annotated[
        bool | None, typer.Option(help="Re-auction at once if the provider dies.")
    ] = None,
    replicas: Annotated[int, typer.Option(help="Providers hosting a served endpoint.")] = 1,
    wait: Annotated[bool, typer.Option(help="Wait for the auction to decide.")] = True,
    as_json: AsJson = False,
) -> None:
    """Rent GPUs: the whole escrow is locked now, billing is per delivered second."""
    with state(ctx).client() as client:
        if serve is not None:  # the winner loads it; buyers call it through the gateway
            from gpudepin.cli.ai import serve_workload

            workload = serve_workload(client, serve)
        lease = client.create_lease(
            gpu,
            _hours(hours),
            max_price,
            regions=region,
            gpus=gpus,
            min_vram_gb=min_vram,
            workload=workload,
            tier=tier,
            uptime=uptime,
            failover=failover,
            replicas=replicas,
        )
        if wait and lease["order_state"] == "open":
            lease = wait_for_auction(client, lease["id"])
    print_json(lease) if as_json else print_lease(lease)


@lease_app.command("list")
def lease_list(
    ctx: typer.Context,
    provider: Annotated[bool, typer.Option(help="The leases you run, as a provider.")] = False,
    as_json: AsJson = False,
) -> None:
    """Your leases, newest first."""
    with state(ctx).client() as client:
        rows = client.leases("provider" if provider else "buyer")
    if as_json:
        print_json(rows)
        return
    table = Table("id", "state", "gpu", "provider", "billed", "seconds")
    for r in rows:
        cur = r if provider else (r.get("lease") or {})
        table.add_row(
            r["id"],
            r["state"],
            str(r.get("gpu_class") or ""),
            cur.get("provider", ""),
            cur.get("billed", ""),
            str(cur.get("billed_seconds", "")),
        )
    console.print(table)


@lease_app.command("show")
def lease_show(ctx: typer.Context, lease_id: str, as_json: AsJson = False) -> None:
    """One lease: its provider, price, seconds billed, fee and state (and, for a served
    model, its readiness and request latency p50/p95/p99)."""
    with state(ctx).client() as client:
        lease = client.lease(lease_id)
        current = lease.get("lease") or {}
        if str(current.get("workload", "")).startswith("serve:"):
            lease["endpoint"] = client.lease_endpoint(current["id"])
    print_json(lease) if as_json else print_lease(lease)
    if current.get("id") and not as_json:
        console.print(f"dashboard page: {client.base_url}/leases/{current['id']}")
    if "endpoint" in lease and not as_json:
        from gpudepin.cli.ai import print_endpoint

        print_endpoint(lease["endpoint"])


@lease_app.command("close")
def lease_close(ctx: typer.Context, lease_id: str) -> None:
    """End a lease now; the unspent escrow returns to your balance."""
    with state(ctx).client() as client:
        lease = client.close_lease(lease_id)
    print_lease(lease)


@lease_app.command("sla")
def lease_sla(ctx: typer.Context, lease_id: str, as_json: AsJson = False) -> None:
    """A lease's measured uptime against its target, each outage and what it cost whom."""
    with state(ctx).client() as client:
        sla = client.lease_sla(lease_id)
    if as_json:
        print_json(sla)
        return
    if sla["uptime_target"] is None:
        console.print(f"{sla['lease_id']}: {sla.get('note', 'no uptime SLA')}")
        return
    measured = "not started" if sla["measured_uptime"] is None else f"{sla['measured_uptime']}%"
    console.print(
        f"[bold]{sla['lease_id']}[/bold] {sla['state']} — uptime {measured} "
        f"(target {sla['uptime_target']}%), fee paid {sla['fee_paid']}, "
        f"credit {sla['credit_owed']}"
        + (f", paid {sla['credited']}" if sla["settled"] else " (settled when it ends)"),
        highlight=False,
    )
    for o in sla["outages"]:
        console.print(
            f"  outage {o['duration_s']} s from {o['start']:.1f} ({o['source']}): "
            f"{o['provider']} pays {o['cost']} to {o['paid_to']}",
            highlight=False,
        )
