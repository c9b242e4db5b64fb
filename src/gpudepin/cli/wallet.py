"""``wallet`` and ``providers`` commands."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from gpudepin.cli.common import console, print_json, state

wallet_app = typer.Typer(help="Your balances; deposits and withdrawals.", no_args_is_help=True)
providers_app = typer.Typer(help="Providers on the network.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(wallet_app, name="wallet")
    app.add_typer(providers_app, name="providers")


def _show(w: dict[str, str]) -> None:
    console.print(
        f"{w['address']}: available {w['available']} · in escrow {w['escrow']} · "
        f"earned {w['earned']}" + (f" · held {w['held']}" if w.get("held", "0") != "0" else "")
    )


@wallet_app.command("balance")
def balance(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Available, escrowed and earned tokens."""
    with state(ctx).client() as client:
        w = client.wallet()
    print_json(w) if as_json else _show(w)


@wallet_app.command("deposit")
def deposit(
    ctx: typer.Context,
    amount: str,
    chain_rpc: Annotated[
        str | None, typer.Option(help="JSON-RPC URL of the chain (default: the coordinator's).")
    ] = None,
) -> None:
    """Add tokens: on a chain network, sent to the vault (the local chain's faucet tops
    you up with TEST tokens); on a network without a chain, a faucet of test credits."""
    from gpudepin.cli.chain import deposit_on_chain

    st = state(ctx)
    with st.client() as client:
        if client.chain_status()["enabled"]:
            deposit_on_chain(st, client, amount, chain_rpc)
            return
        w = client.faucet(amount)
    console.print(f"credited {amount} test tokens from the local faucet (not real money)")
    _show(w)


@wallet_app.command("withdraw")
def withdraw(
    ctx: typer.Context,
    amount: str,
    source: Annotated[
        str, typer.Option("--from", help="available (buyer) or earned (provider).")
    ] = "available",
) -> None:
    """Take tokens out of the network (on chain: claimable after the next epoch)."""
    with state(ctx).client() as client:
        w = client.withdraw(amount, source)
        on_chain = client.chain_status()["enabled"]
    if on_chain:
        console.print(
            f"withdrawal of {amount} requested: it enters the next epoch's root; "
            "then `gpudepin wallet claim` pays it to your address on chain"
        )
    _show(w)


@providers_app.command("list")
def providers_list(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Registered providers, their hardware and whether they are online."""
    with state(ctx).client() as client:
        rows = client.providers()
        pages = f"{client.base_url}/providers/ADDRESS"
    if as_json:
        print_json(rows)
        return
    table = Table("name", "address", "region", "class", "hardware", "online", "tasks done")
    for p in rows:
        hw = p["hardware"]
        desc = (
            ", ".join(g["name"] for g in hw.get("gpus", []))
            or f"{hw.get('cpu_model', '?')} x{hw.get('cores', '?')} cores"
        )
        table.add_row(
            p["name"],
            p["address"],
            p["region"],
            p["gpu_class"],
            desc,
            "yes" if p["online"] else "no",
            str(p["tasks_done"]),
        )
    console.print(table)
    console.print(f"each provider's dashboard page: {pages}")
