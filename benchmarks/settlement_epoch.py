"""The coordinator's side of an epoch for N payees: books, tree, root, proofs, reconciliation.

A coordinator on SQLite settles on a real Anvil node. One buyer deposits on chain; N
providers each earn for one task; then one epoch runs through the same duty the
coordinator runs (``settlement.settle``). Prints the time to credit the deposit, to close
the epoch (earnings into claimable, the tree, the pending record), to post the root, the
first and a cached proof request, and one provider's claim (gas and booking).

    python3 benchmarks/settlement_epoch.py [--payees 10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from eth_account import Account
from fastapi.testclient import TestClient

from gpudepin.chain.anvil import AnvilNode
from gpudepin.chain.client import ChainClient
from gpudepin.chain.config import deploy
from gpudepin.coordinator import settlement, store
from gpudepin.coordinator.app import create_app
from gpudepin.core import ledger
from gpudepin.core.money import UNIT
from gpudepin.settings import CoordinatorSettings


class Clock:
    t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def timed(label: str, fn: object, *args: object) -> object:
    start = time.perf_counter()
    out = fn(*args)  # type: ignore[operator]
    print(f"{label:<52} {time.perf_counter() - start:8.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payees", type=int, default=10_000)
    args = parser.parse_args()
    n = args.payees
    price = UNIT // 10

    with tempfile.TemporaryDirectory() as tmp, AnvilNode() as node:
        home = Path(tmp)
        chain = ChainClient(node.rpc_url)
        deploy(chain, home)
        clock = Clock()
        settings = CoordinatorSettings(home=home, chain_rpc=node.rpc_url, epoch_interval_s=60)
        app = create_app(settings, run_loops=False, clock=clock)
        with TestClient(app):
            rt = app.state.rt
            link = settlement.require_chain(rt)
            buyer = "0x" + bytes(Account.create().key).hex()
            buyer_addr = chain.address_of(buyer).lower()
            chain.faucet_mint(link.minter_key, buyer_addr, n * price)
            chain.deposit(buyer, n * price)
            timed("credit the deposit (scan + ledger)", settlement.settle, rt)

            providers = [Account.create() for _ in range(n)]
            start = time.perf_counter()
            with rt.engine.begin() as conn:
                bals = store.lock_balances(conn, [ledger.available_account(buyer_addr)])
                store.apply(conn, ledger.lock_escrow(bals, buyer_addr, "j", n * price), clock())
                escrow = ledger.escrow_account(buyer_addr, "j")
                left = n * price
                for p in providers:
                    pay = ledger.pay_from_escrow(
                        {escrow: left}, buyer_addr, "j", p.address, price, 500
                    )
                    store.apply(conn, pay, clock())
                    left -= price
            print(
                f"{'(setup: pay ' + str(n) + ' providers in the books)':<52} "
                f"{time.perf_counter() - start:8.2f} s"
            )

            clock.t += 60
            with rt.engine.begin() as conn:
                closed = timed(
                    f"close the epoch: {n} earnings -> claimable, tree",
                    settlement.close_epoch,
                    conn,
                    link,
                    clock(),
                )
            timed("post the root + burn (pending -> posted)", settlement.finish_pending, rt, link)
            with rt.engine.connect() as conn:
                epoch = settlement.latest_epoch(conn)
            print(f"{'root posting gas':<52} {epoch.gas:8,}")
            link.trees.clear()
            target = providers[n // 2]
            with rt.engine.connect() as conn:
                proof = timed(
                    "proof, first request (tree rebuilt)",
                    settlement.proof_for,
                    conn,
                    link,
                    target.address,
                )
                timed("proof, cached tree", settlement.proof_for, conn, link, target.address)
            key = "0x" + bytes(target.key).hex()
            chain.fund_gas(target.address)
            tx = chain.claim(
                key,
                int(proof["cumulative"]),  # type: ignore[index]
                [bytes.fromhex(h[2:]) for h in proof["proof"]],
            )  # type: ignore[index]
            print(f"{'claim gas (first claim, payee holds none)':<52} {tx.gas_used:8,}")
            clock.t += 60
            timed("next pass: book the claim, reconcile, no new root", settlement.settle, rt)
            with rt.engine.connect() as conn:
                rec = settlement.get_state(conn, settlement.RECONCILED)
            print(
                f"reconciliation: vault {int(rec['vault_balance']) / UNIT:g} tokens, "
                f"books {int(rec['expected']) / UNIT:g}, ok={rec['ok']}; "
                f"epoch {closed.number} has {len(closed.leaves)} payees"
            )


if __name__ == "__main__":
    main()
