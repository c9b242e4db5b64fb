"""On-chain commands: ``chain deploy|status|epochs``, deposits, earnings and claims."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from gpudepin.cli.common import State, console, print_json, state
from gpudepin.client import Client
from gpudepin.core.errors import Forbidden, InsufficientFunds, Unavailable
from gpudepin.core.money import format_amount, parse_amount
from gpudepin.identity import load_or_create_key

if TYPE_CHECKING:
    from gpudepin.chain.client import ChainClient

chain_app = typer.Typer(help="On-chain settlement: contracts, epochs.", no_args_is_help=True)

RpcOption = Annotated[
    str | None,
    typer.Option("--chain-rpc", help="JSON-RPC URL of the chain (default: the coordinator's)."),
]


def register(app: typer.Typer) -> None:
    from gpudepin.cli.network import provider_app
    from gpudepin.cli.wallet import wallet_app

    app.add_typer(chain_app, name="chain")
    provider_app.command("earnings")(earnings)
    provider_app.command("claim")(claim)
    wallet_app.command("claim")(claim)


@chain_app.command("deploy")
def deploy(
    ctx: typer.Context,
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of any EVM chain.")],
    deployer_key: Annotated[
        str | None,
        typer.Option(help="Key (in HOME/keys) that pays for deployment. Default: the minter."),
    ] = None,
) -> None:
    """Deploy Token, Vault and Stakes and record them in HOME/chain.json."""
    from gpudepin.chain.client import ChainClient
    from gpudepin.chain.config import deploy as deploy_contracts

    st = state(ctx)
    client = ChainClient(rpc)
    key = None
    if deployer_key:
        key = "0x" + bytes(load_or_create_key(st.home, deployer_key).key).hex()
    with console.status(f"deploying to chain {client.chain_id} at {rpc} …"):
        cfg = deploy_contracts(client, st.home, key)
    for name, addr in cfg.addresses.items():
        console.print(f"{name:7} {addr}")
    console.print(
        f"recorded in {st.home / 'chain.json'}; start the coordinator with --chain-rpc {rpc}"
    )


@chain_app.command("status")
def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Where the coordinator settles, whether settlement is halted, the last reconciliation."""
    with state(ctx).client() as client:
        s = client.chain_status()
    if as_json:
        print_json(s)
        return
    if not s["enabled"]:
        console.print("settlement is off: this coordinator runs without a chain")
        return
    console.print(f"chain {s['chain_id']} at {s['rpc_url']}; vault {s['addresses']['vault']}")
    if s["halted"]:
        console.print(f"[red bold]SETTLEMENT HALTED[/red bold]: {s['halted']['reason']}")
    rec = s.get("reconciliation")
    if rec:
        verdict = "ok" if rec["ok"] else "MISMATCH"
        vault, books = (format_amount(int(rec[k])) for k in ("vault_balance", "expected"))
        console.print(
            f"reconciliation at block {rec['block']}: vault {vault}, books {books} — {verdict}"
        )
    last = s.get("last_epoch")
    if last:
        console.print(f"last epoch {last['number']} ({last['state']}): {last['tx_hash']}")


@chain_app.command("epochs")
def epochs(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Epochs settled on chain: root, payees, burned fees, transaction."""
    with state(ctx).client() as client:
        rows = client.chain_epochs()
    if as_json:
        print_json(rows)
        return
    table = Table("epoch", "state", "payees", "owed (cumulative)", "burned", "root", "tx", "gas")
    for e in rows:
        table.add_row(
            str(e["number"]),
            e["state"],
            str(e["payees"]),
            e["total"],
            e["fees_burned"],
            e["root"],
            e["tx_hash"] or "-",
            str(e["gas"] or "-"),
        )
    console.print(table)


def _chain_for(client: Client, rpc: str | None) -> tuple[ChainClient, dict[str, Any]]:
    """A chain client at the coordinator's contracts, checked to be the same chain."""
    from gpudepin.chain.client import ChainClient

    s = client.chain_status()
    if not s["enabled"]:
        raise Unavailable(
            "this coordinator does not settle on chain",
            hint="Start the network with Anvil installed (see docs/chain.md).",
        )
    chain = ChainClient(rpc or s["rpc_url"], s["addresses"])
    if chain.chain_id != s["chain_id"]:
        raise Forbidden(
            f"the node at {chain.rpc_url} is chain {chain.chain_id}, "
            f"the coordinator settles on chain {s['chain_id']}",
            hint="Pass the right --chain-rpc.",
        )
    return chain, s


def _key_hex(st: State) -> str:
    return "0x" + bytes(load_or_create_key(st.home, st.key).key).hex()


def deposit_on_chain(st: State, client: Client, amount: str, rpc: str | None = None) -> None:
    """Send ``amount`` to the vault (topping up from the faucet on the local chain only)
    and wait until the coordinator has credited it."""
    chain, s = _chain_for(client, rpc)
    units = parse_amount(amount)
    key = _key_hex(st)
    have = chain.balance_of(client.address)
    if have < units:
        if not chain.is_local:  # refuse before asking: no faucet outside the local chain
            raise InsufficientFunds(
                f"{client.address} holds {format_amount(have)} tokens on chain "
                f"{chain.chain_id}, needs {amount}",
                hint="Buy or bridge the token to this address first.",
            )
        client.chain_faucet(format_amount(units - have, places=18))
        console.print(f"minted {format_amount(units - have)} TEST tokens from the local faucet")
    elif chain.is_local and chain.eth_balance(client.address) == 0:
        client.chain_faucet("0")
    with console.status("depositing into the vault …"):
        tx = chain.deposit(key, units)
    console.print(f"deposited {amount} into vault {s['addresses']['vault']} (tx {tx.tx_hash})")
    deadline = time.monotonic() + 120
    with console.status("waiting for the coordinator to credit it …"):
        while not client.chain_deposits(tx.tx_hash):
            if time.monotonic() > deadline:
                raise Unavailable(
                    "the coordinator has not credited the deposit within 120 s",
                    hint="It credits confirmed deposits; see `gpudepin chain status`.",
                )
            time.sleep(0.3)  # polling interval of a bounded wait
    w = client.wallet()
    console.print(f"credited: available {w['available']}")


def earnings(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Earned (not yet in an epoch), held back, claimable on chain, and claimed so far."""
    st = state(ctx)
    with st.client() as client:
        a = client.chain_account()
    if as_json:
        print_json(a)
        return
    held = f" · held back {a['held']}" if a["held"] != "0" else ""
    console.print(
        f"{a['address']}: earned {a['earned']}{held} · claimable {a['claimable']} · "
        f"claimed {a['claimed']}"
    )


def claim(ctx: typer.Context, rpc: RpcOption = None) -> None:
    """Claim on chain what the latest epoch root owes you, with the coordinator's proof."""
    st = state(ctx)
    with st.client() as client:
        chain, _ = _chain_for(client, rpc)
        p = client.chain_proof()
        cumulative = int(p["cumulative"])
        # The contract is the judge of the proof: its refusal comes back as one line.
        if chain.is_local and chain.eth_balance(client.address) == 0:
            client.chain_faucet("0")  # gas money, local chain only
        before = chain.balance_of(client.address)
        with console.status(f"claiming from epoch {p['epoch']} …"):
            tx = chain.claim(_key_hex(st), cumulative, [bytes.fromhex(h[2:]) for h in p["proof"]])
        paid = chain.balance_of(client.address) - before
    console.print(f"claimed {format_amount(paid)} tokens (epoch {p['epoch']}, tx {tx.tx_hash})")
