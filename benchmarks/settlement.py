"""Settle one epoch for 10,000 payees on a real Anvil node and report the gas.

Prints the gas of the root posting (which also burns the epoch's fees), the gas of
claims measured on several payees in the three situations a payee meets, and payees
per on-chain settlement transaction. Targets: >= 10,000 payees per settlement
transaction and <= 60,000 gas per claim.

    python3 benchmarks/settlement.py [--payees 10000] [--claims 10]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from gpudepin.chain.anvil import AnvilNode
from gpudepin.chain.client import ChainClient
from gpudepin.chain.merkle import build_tree, default_keccak
from gpudepin.core.money import UNIT


def _key(rng: random.Random) -> str:
    return "0x" + rng.randbytes(32).hex()


def _row(label: str, gases: list[int], depth: int) -> str:
    return (
        f"{label:<44} median {statistics.median(gases):>7,.0f}  min {min(gases):>7,}"
        f"  max {max(gases):>7,}  (n={len(gases)}, proof {depth} hashes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payees", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=10, help="claims measured per situation")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    keccak = default_keccak()

    with AnvilNode() as node:
        c = ChainClient(node.rpc_url)
        deployer, settler, buyer = _key(rng), _key(rng), _key(rng)
        fresh = [_key(rng) for _ in range(args.claims)]
        holders = [_key(rng) for _ in range(args.claims)]
        for key in (deployer, settler, buyer, *fresh, *holders):
            c.fund_gas(c.address_of(key))
        c.deploy_all(deployer, c.address_of(settler), c.address_of(deployer))
        for key in holders:  # payees that already hold some of the token
            c.mint(deployer, c.address_of(key), UNIT)

        measured = [c.address_of(k) for k in fresh + holders]
        others = ["0x" + rng.randbytes(20).hex() for _ in range(args.payees - len(measured))]
        owed = {a: rng.randrange(1, 50) * UNIT // 100 for a in measured + others}
        fees = sum(owed.values()) // 10
        c.mint(deployer, c.address_of(buyer), 3 * (sum(owed.values()) + fees))
        c.deposit(buyer, 3 * (sum(owed.values()) + fees))

        t0 = time.perf_counter()
        tree = build_tree(owed, keccak)
        build_s = time.perf_counter() - t0
        posted = c.post_root(settler, 1, tree.root, sum(owed.values()), fees)

        def claim_all(keys: list[str]) -> tuple[list[int], int]:
            gases, depth = [], 0
            for key in keys:
                addr = c.address_of(key)
                proof = tree.proof(addr)
                depth = max(depth, len(proof))
                gases.append(c.claim(key, owed[addr], proof).gas_used)
            return gases, depth

        first_fresh, depth = claim_all(fresh)
        first_holder, _ = claim_all(holders)
        # Epoch 2 raises everyone's cumulative amount: the steady state of a provider
        # that claims every epoch or so.
        owed = {a: v + rng.randrange(1, 50) * UNIT // 100 for a, v in owed.items()}
        tree = build_tree(owed, keccak)
        posted2 = c.post_root(settler, 2, tree.root, sum(owed.values()), fees)
        repeat, depth2 = claim_all(fresh + holders)

    print(f"payees in the epoch:               {args.payees:,}")
    print(f"Merkle tree build (Python):        {build_s:.2f} s")
    print(f"root posting + fee burn gas:       {posted.gas_used:,} (epoch 2: {posted2.gas_used:,})")
    print(f"settlement gas per payee:          {posted.gas_used / args.payees:.1f}")
    print(f"payees per settlement transaction: {args.payees:,} (one postRoot per epoch)")
    print(_row("claim gas, repeat claim (steady state)", repeat, depth2))
    print(_row("claim gas, first claim, payee holds tokens", first_holder, depth))
    print(_row("claim gas, first claim, payee holds nothing", first_fresh, depth))
    ok = statistics.median(repeat) <= 60_000
    print(f"target <= 60,000 gas per claim (repeat): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
