"""The contracts on a real Anvil node, driven through ChainClient."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gpudepin.chain.anvil import AnvilNode, find_anvil, free_port
from gpudepin.chain.merkle import build_tree, default_keccak
from gpudepin.core.errors import Conflict, Forbidden, InsufficientFunds, InvalidInput, Unavailable
from gpudepin.core.money import UNIT

if TYPE_CHECKING:
    from gpudepin.chain.client import ChainClient
    from gpudepin.chain.merkle import MerkleTree

pytestmark = [
    pytest.mark.chain,
    pytest.mark.skipif(find_anvil() is None, reason="Anvil is not installed"),
]

KECCAK = default_keccak()
DAY = 24 * 3600


def new_key() -> str:
    from eth_account import Account

    return "0x" + bytes(Account.create().key).hex()


@dataclass
class World:
    """One fresh deployment and its actors, each with gas money."""

    client: ChainClient
    deployer: str
    settler: str
    arbiter: str
    buyer: str
    alice: str
    bob: str

    def addr(self, key: str) -> str:
        return self.client.address_of(key)


@pytest.fixture(scope="module")
def node() -> Iterator[AnvilNode]:
    with AnvilNode() as running:
        yield running


@pytest.fixture
def world(node: AnvilNode) -> World:
    from gpudepin.chain.client import ChainClient

    client = ChainClient(node.rpc_url)
    keys = [new_key() for _ in range(6)]
    for key in keys:
        client.fund_gas(client.address_of(key))
    deployer, settler, arbiter, buyer, alice, bob = keys
    client.deploy_all(
        deployer, client.address_of(settler), client.address_of(arbiter), unbond_delay_s=DAY
    )
    client.faucet_mint(deployer, client.address_of(buyer), 1_000 * UNIT)
    return World(client, deployer, settler, arbiter, buyer, alice, bob)


def settle(w: World, epoch: int, owed: dict[str, int], fees: int = 0) -> MerkleTree:
    """Post a root for ``{key: cumulative}`` and return the tree (keyed by address)."""
    tree = build_tree({w.addr(k): v for k, v in owed.items()}, KECCAK)
    w.client.post_root(w.settler, epoch, tree.root, sum(owed.values()), fees)
    return tree


def test_deposit_emits_one_event_per_deposit_and_listing_is_idempotent(world: World) -> None:
    c = world.client
    first = c.deposit(world.buyer, 100 * UNIT)
    c.deposit(world.buyer, 50 * UNIT)
    events = c.deposits_since(0)
    assert [(e.amount, e.nonce) for e in events] == [(100 * UNIT, 1), (50 * UNIT, 2)]
    assert events[0].sender == world.addr(world.buyer)
    assert events[0].key == f"{first.tx_hash}:{events[0].log_index}"
    assert len({e.key for e in events}) == 2
    # Listing again (a restarted coordinator) yields the same keys, so crediting by key is once.
    assert c.deposits_since(0) == events
    assert c.deposits_since(events[-1].block_number + 1) == []
    assert c.vault_balance() == 150 * UNIT


def test_deposits_wait_for_confirmations(world: World, node: AnvilNode) -> None:
    from gpudepin.chain.client import ChainClient

    cautious = ChainClient(node.rpc_url, world.client.addresses, confirmations=2)
    tx = world.client.deposit(world.buyer, 10 * UNIT)
    assert cautious.deposits_since(tx.block_number) == []
    world.client.mine(2)
    assert [e.amount for e in cautious.deposits_since(tx.block_number)] == [10 * UNIT]


def test_claim_pays_exactly_the_cumulative_difference(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    alice = world.addr(world.alice)
    tree = settle(world, 1, {world.alice: 100 * UNIT, world.bob: 30 * UNIT})
    c.claim(world.alice, 100 * UNIT, tree.proof(alice))
    assert c.balance_of(alice) == 100 * UNIT
    tree = settle(world, 2, {world.alice: 250 * UNIT, world.bob: 30 * UNIT})
    c.claim(world.alice, 250 * UNIT, tree.proof(alice))
    assert c.balance_of(alice) == 250 * UNIT
    assert c.claimed(alice) == 250 * UNIT
    assert c.vault_balance() == 250 * UNIT


def test_claiming_more_than_the_proof_says_reverts(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    alice = world.addr(world.alice)
    tree = settle(world, 1, {world.alice: 100 * UNIT, world.bob: 30 * UNIT})
    with pytest.raises(InvalidInput, match="invalid proof"):
        c.claim(world.alice, 101 * UNIT, tree.proof(alice))
    assert c.balance_of(alice) == 0


def test_claiming_twice_with_the_same_proof_reverts(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    alice = world.addr(world.alice)
    tree = settle(world, 1, {world.alice: 100 * UNIT, world.bob: 30 * UNIT})
    c.claim(world.alice, 100 * UNIT, tree.proof(alice))
    with pytest.raises(Conflict, match="nothing to claim"):
        c.claim(world.alice, 100 * UNIT, tree.proof(alice))
    assert c.balance_of(alice) == 100 * UNIT


def test_an_old_epochs_proof_no_longer_verifies(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    alice = world.addr(world.alice)
    old = settle(world, 1, {world.alice: 100 * UNIT, world.bob: 30 * UNIT})
    settle(world, 2, {world.alice: 120 * UNIT, world.bob: 30 * UNIT})
    with pytest.raises(InvalidInput, match="invalid proof"):
        c.claim(world.alice, 100 * UNIT, old.proof(alice))


def test_another_addresss_proof_cannot_pay_the_sender(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    alice, bob = world.addr(world.alice), world.addr(world.bob)
    tree = settle(world, 1, {world.alice: 100 * UNIT, world.bob: 30 * UNIT})
    with pytest.raises(InvalidInput, match="invalid proof"):
        c.claim(world.bob, 100 * UNIT, tree.proof(alice))
    # Bob may submit Alice's claim, but the tokens go to Alice only.
    c.claim(world.bob, 100 * UNIT, tree.proof(alice), account=alice)
    assert (c.balance_of(alice), c.balance_of(bob)) == (100 * UNIT, 0)


def test_posting_a_root_without_the_settlement_key_reverts(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    tree = build_tree({world.addr(world.alice): 100 * UNIT}, KECCAK)
    for intruder in (world.deployer, world.alice):
        with pytest.raises(Forbidden, match="only the settlement key"):
            c.post_root(intruder, 1, tree.root, 100 * UNIT, 0)
    assert c.vault_state().epoch == 0


def test_an_epoch_posts_once_and_in_order(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 500 * UNIT)
    settle(world, 5, {world.alice: 10 * UNIT})
    for epoch in (5, 4):
        with pytest.raises(Conflict, match="already posted or out of order"):
            settle(world, epoch, {world.alice: 20 * UNIT})
    assert c.root_posted(5) is not None and c.root_posted(4) is None
    assert c.vault_state().total_cumulative == 10 * UNIT


def test_a_root_owing_more_than_was_deposited_reverts(world: World) -> None:
    world.client.deposit(world.buyer, 100 * UNIT)
    with pytest.raises(InsufficientFunds, match="cannot cover"):
        settle(world, 1, {world.alice: 90 * UNIT}, fees=11 * UNIT)


def test_fee_burn_lowers_total_supply_exactly(world: World) -> None:
    c = world.client
    c.deposit(world.buyer, 100 * UNIT)
    supply = c.total_supply()
    settle(world, 1, {world.alice: 80 * UNIT}, fees=7 * UNIT + 3)
    assert c.total_supply() == supply - 7 * UNIT - 3
    assert c.vault_balance() == 93 * UNIT - 3
    posted = c.root_posted(1)
    assert posted is not None and posted.fees_burned == 7 * UNIT + 3


def test_only_the_minter_mints(world: World) -> None:
    with pytest.raises(Forbidden, match="only the minter"):
        world.client.mint(world.buyer, world.addr(world.buyer), UNIT)


def test_the_faucet_refuses_a_real_chain(world: World) -> None:
    world.client._chain_id = 1  # what mainnet reports
    with pytest.raises(Forbidden, match="local chain"):
        world.client.faucet_mint(world.deployer, world.addr(world.alice), UNIT)


def test_stake_unbond_after_delay_and_slash_by_arbiter_only(world: World) -> None:
    c = world.client
    provider, buyer, alice = world.buyer, world.addr(world.buyer), world.addr(world.alice)
    c.stake(provider, 100 * UNIT)
    c.unbond(provider, 40 * UNIT)
    with pytest.raises(Conflict, match="still unbonding"):
        c.withdraw_stake(provider)
    c.advance_time(DAY + 1)
    before = c.balance_of(buyer)
    c.withdraw_stake(provider)
    assert c.balance_of(buyer) == before + 40 * UNIT

    evidence = KECCAK(b"verdict 17")
    payouts = [(alice, 30 * UNIT), (None, 20 * UNIT)]
    with pytest.raises(Forbidden, match="only the arbiter"):
        c.slash(world.settler, buyer, evidence, payouts)
    supply = c.total_supply()
    c.slash(world.arbiter, buyer, evidence, payouts)
    assert c.stake_of(buyer).staked == 10 * UNIT
    assert c.balance_of(alice) == 30 * UNIT
    assert c.total_supply() == supply - 20 * UNIT
    with pytest.raises(Conflict, match="evidence already used"):
        c.slash(world.arbiter, buyer, evidence, [(alice, UNIT)])


def test_slashing_reaches_stake_that_is_unbonding(world: World) -> None:
    c = world.client
    provider = world.addr(world.buyer)
    c.stake(world.buyer, 50 * UNIT)
    c.unbond(world.buyer, 50 * UNIT)
    c.slash(world.arbiter, provider, KECCAK(b"v"), [(world.addr(world.alice), 20 * UNIT)])
    assert c.stake_of(provider).unbonding == 30 * UNIT
    with pytest.raises(InsufficientFunds, match="stake too low"):
        c.slash(world.arbiter, provider, KECCAK(b"w"), [(None, 31 * UNIT)])


def deploy_raw(c: ChainClient, key: str, abi: list[Any], bytecode: str, *args: Any) -> Any:
    factory = c.w3.eth.contract(abi=abi, bytecode=bytecode)
    address = c._transact(key, factory.constructor(*args)).contract_address
    assert address is not None
    return c.w3.eth.contract(address=c.w3.to_checksum_address(address), abi=abi)


def test_a_token_that_reenters_the_vault_is_paid_once(world: World) -> None:
    """Our token has no hooks, so this cannot happen with it; a hostile token shows that
    the vault's lock and its effects-before-transfer order would stop it anyway."""
    import vyper

    from gpudepin.chain.compile import load_artifact

    c = world.client
    src = (Path(__file__).parent / "contracts" / "ReentrantToken.vy").read_text()
    out = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    token = deploy_raw(c, world.deployer, out["abi"], out["bytecode"])
    art = load_artifact("Vault")
    vault = deploy_raw(
        c, world.deployer, art.abi, art.bytecode, token.address, world.addr(world.settler)
    )
    attacker = world.addr(world.alice)
    c._transact(world.buyer, token.functions.mint(world.addr(world.buyer), 100))
    c._transact(world.buyer, vault.functions.deposit(100))
    tree = build_tree({attacker: 40, world.addr(world.bob): 60}, KECCAK)
    c._transact(world.settler, vault.functions.postRoot(1, tree.root, 100, 0))
    proof = tree.proof(attacker)
    c._transact(world.alice, token.functions.arm(vault.address, attacker, 40, proof))

    c._transact(world.alice, vault.functions.claim(attacker, 40, proof))

    assert token.functions.reentryTried().call()
    assert not token.functions.reentryPaid().call()
    assert token.functions.balanceOf(attacker).call() == 40
    assert vault.functions.claimed(attacker).call() == 40


def test_a_restarted_node_keeps_its_state_and_the_client_reconnects(tmp_path: Path) -> None:
    from gpudepin.chain.client import ChainClient

    port = free_port()
    state = tmp_path / "anvil-state.json"
    node = AnvilNode(state, port=port)
    with node:
        c = ChainClient(node.rpc_url, timeout_s=5)
        deployer, buyer = new_key(), new_key()
        for key in (deployer, buyer):
            c.fund_gas(c.address_of(key))
        addresses = c.deploy_all(deployer, c.address_of(deployer), c.address_of(deployer))
        c.faucet_mint(deployer, c.address_of(buyer), 100 * UNIT)
        c.deposit(buyer, 60 * UNIT)
        supply = c.total_supply()
        seen = c.deposits_since(0)
    with pytest.raises(Unavailable, match="does not answer"):
        c.vault_balance()
    with AnvilNode(state, port=port):
        assert c.balance_of(c.address_of(buyer)) == 40 * UNIT
        assert c.vault_balance() == 60 * UNIT
        assert c.total_supply() == supply
        assert c.deposits_since(0) == seen  # same keys after a restart: credited once
        assert ChainClient(c.rpc_url, addresses).vault_state().total_deposited == 60 * UNIT
        c.deposit(buyer, 10 * UNIT)
        assert c.vault_balance() == 70 * UNIT
