"""On-chain settlement through the coordinator: a real Anvil node, the real SDK in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import select

from gpudepin.chain.anvil import AnvilNode, find_anvil
from gpudepin.client import Client
from gpudepin.coordinator import loops, settlement, store
from gpudepin.coordinator.app import create_app
from gpudepin.coordinator.tables_chain import chain_epochs
from gpudepin.core import ledger
from gpudepin.core.errors import Forbidden, InvalidInput
from gpudepin.core.money import UNIT
from gpudepin.settings import CoordinatorSettings

if TYPE_CHECKING:
    from gpudepin.chain.client import ChainClient

pytestmark = [
    pytest.mark.chain,
    pytest.mark.skipif(find_anvil() is None, reason="Anvil is not installed"),
]

EPOCH_S = 10.0


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class Net:
    """A coordinator settling on a fresh deployment, and keys that act on chain."""

    home: Path
    app: TestClient
    rt: Any
    clock: Clock
    chain: ChainClient
    db_url: str | None

    def client(self, key: str | None = None) -> tuple[Client, str]:
        """An SDK client and its private key (hex), so it can act on chain as well."""
        account = Account.from_key(key) if key else Account.create()
        http = TestClient(self.app.app, base_url="http://testserver/v1")
        return Client("http://testserver", account, http=http), "0x" + bytes(account.key).hex()

    def tick(self) -> None:
        loops.tick(self.rt)

    def epoch(self) -> None:
        """Let an epoch come due and run the duties."""
        self.clock.t += EPOCH_S
        self.tick()

    def balances(self) -> dict[str, int]:
        with self.rt.engine.connect() as conn:
            return store.all_balances(conn)

    def status(self) -> dict[str, Any]:
        return self.client()[0].chain_status()


@pytest.fixture(scope="module")
def node() -> Iterator[AnvilNode]:
    with AnvilNode() as running:
        yield running


def start(home: Path, rpc: str, clock: Clock, db_url: str | None = None) -> Any:
    settings = CoordinatorSettings(
        home=home, db_url=db_url, chain_rpc=rpc, epoch_interval_s=EPOCH_S
    )
    return create_app(settings, run_loops=False, clock=clock)


@pytest.fixture(params=["sqlite", "postgres"])
def net(request: pytest.FixtureRequest, node: AnvilNode, tmp_path: Path) -> Iterator[Net]:
    from gpudepin.chain.client import ChainClient
    from gpudepin.chain.config import deploy

    db_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    chain = ChainClient(node.rpc_url)
    deploy(chain, tmp_path)
    clock = Clock()
    app = start(tmp_path, node.rpc_url, clock, db_url)
    with TestClient(app) as tc:
        yield Net(tmp_path, tc, app.state.rt, clock, chain, db_url)


def deposit(net: Net, key: str, tokens: int) -> str:
    """Mint test tokens to ``key`` (the faucet's role) and deposit them into the vault."""
    minter = settlement.require_chain(net.rt).minter_key
    net.chain.faucet_mint(minter, net.chain.address_of(key), tokens * UNIT)
    return net.chain.deposit(key, tokens * UNIT).tx_hash


def pay_for_work(net: Net, buyer: str, provider: str, gross: int) -> None:
    """What an accepted task does to the books: escrow, then pay the provider less the fee."""
    now = net.clock()
    with net.rt.engine.begin() as conn:
        bals = store.lock_balances(conn, [ledger.available_account(buyer)])
        store.apply(conn, ledger.lock_escrow(bals, buyer, "job1", gross), now)
        bals = store.lock_balances(conn, [ledger.escrow_account(buyer, "job1")])
        store.apply(conn, ledger.pay_from_escrow(bals, buyer, "job1", provider, gross, 500), now)


def test_a_deposit_is_credited_once_whoever_sends_it_and_however_often_it_is_read(
    net: Net,
) -> None:
    buyer, key = net.client()
    tx = deposit(net, key, 25)
    net.tick()
    assert buyer.wallet()["available"] == "25"
    assert [d["amount"] for d in buyer.chain_deposits(tx)] == ["25"]
    # the same logs read again (cursor rewound) credit nothing more
    with net.rt.engine.begin() as conn:
        settlement.set_state(conn, settlement.CURSOR, 0)
    net.tick()
    assert buyer.wallet()["available"] == "25"
    # a coordinator restarted on the same database reads them again: still once
    app = start(net.home, net.chain.rpc_url, net.clock, net.db_url)
    with TestClient(app) as tc:
        loops.tick(app.state.rt)
        again = Client(
            "http://testserver",
            buyer.account,
            http=TestClient(tc.app, base_url="http://testserver/v1"),
        )
        assert again.wallet()["available"] == "25"
    # an address that never spoke to the coordinator becomes a buyer with its deposit
    stranger = "0x" + bytes(Account.create().key).hex()
    deposit(net, stranger, 3)
    net.tick()
    assert net.balances()[ledger.available_account(net.chain.address_of(stranger))] == 3 * UNIT
    assert not ledger.imbalances(net.balances())


def test_an_epoch_pays_exactly_the_earnings_after_fees_and_burns_the_fees(net: Net) -> None:
    buyer, buyer_key = net.client()
    deposit(net, buyer_key, 10)
    net.tick()
    provider, provider_key = net.client()
    pay_for_work(net, buyer.address, provider.address, 4 * UNIT)  # 5% fee: 0.2
    supply = net.chain.total_supply()
    net.epoch()
    epochs = buyer.chain_epochs()
    assert [(e["number"], e["state"], e["fees_burned"]) for e in epochs] == [(1, "posted", "0.2")]
    assert epochs[0]["tx_hash"].startswith("0x") and epochs[0]["gas"] > 0
    assert net.chain.total_supply() == supply - UNIT // 5
    assert provider.chain_account()["units"]["claimable"] == str(38 * UNIT // 10)

    proof = provider.chain_proof()
    assert int(proof["cumulative"]) == 38 * UNIT // 10
    path = [bytes.fromhex(h[2:]) for h in proof["proof"]]
    net.chain.fund_gas(provider.address)
    with pytest.raises(InvalidInput, match="invalid proof"):
        net.chain.claim(provider_key, 4 * UNIT, path)  # more than the leaf says
    net.chain.claim(provider_key, int(proof["cumulative"]), path)
    assert net.chain.balance_of(provider.address) == 38 * UNIT // 10

    # a withdrawal request enters the next root; the claim books it out to the world
    buyer.withdraw("2")
    net.epoch()
    p = buyer.chain_proof()
    assert p["epoch"] == 2 and int(p["cumulative"]) == 2 * UNIT
    net.chain.fund_gas(buyer.address)
    net.chain.claim(buyer_key, 2 * UNIT, [bytes.fromhex(h[2:]) for h in p["proof"]])
    net.tick()
    figures = provider.chain_account()["units"]
    assert figures["claimable"] == "0" and figures["claimed"] == str(38 * UNIT // 10)
    assert net.chain.balance_of(buyer.address) == 2 * UNIT
    bals = net.balances()
    assert not ledger.imbalances(bals)
    assert bals[ledger.BURNED] == UNIT // 5
    net.epoch()  # nothing changed: no new root, and the vault still matches the books
    assert len(buyer.chain_epochs()) == 2
    rec = net.status()["reconciliation"]
    assert rec["ok"] and rec["difference"] == "0"
    assert int(rec["vault_balance"]) == net.chain.vault_balance() == 4 * UNIT


def test_a_root_posted_before_the_coordinator_died_is_recorded_not_replaced(net: Net) -> None:
    buyer, key = net.client()
    deposit(net, key, 5)
    net.tick()
    buyer.withdraw("1")
    link = settlement.require_chain(net.rt)
    with net.rt.engine.begin() as conn:
        pending = settlement.close_epoch(conn, link, net.clock())
    assert pending is not None and pending.state == "pending"
    # the coordinator posts the root and dies before recording it
    sent = net.chain.post_root(
        link.settlement_key, 1, bytes.fromhex(pending.root[2:]), int(pending.total), 0
    )
    buyer.withdraw("1")  # later activity must not change epoch 1's root
    app = start(net.home, net.chain.rpc_url, net.clock, net.db_url)
    with TestClient(app):
        loops.tick(app.state.rt)
    with net.rt.engine.connect() as conn:
        rows = list(conn.execute(select(chain_epochs)))
    assert [(r.number, r.state, r.tx_hash, r.root) for r in rows] == [
        (1, "posted", sent.tx_hash, pending.root)
    ]
    assert net.chain.vault_state().epoch == 1
    # the next epoch carries the later withdrawal under a new number
    net.epoch()
    assert net.chain.vault_state().epoch == 2
    assert buyer.chain_proof()["cumulative"] == str(2 * UNIT)


@pytest.mark.parametrize("net", ["sqlite"], indirect=True)  # no SQL of its own
def test_a_pending_epoch_that_never_reached_the_chain_is_posted_with_its_own_root(
    net: Net,
) -> None:
    buyer, key = net.client()
    deposit(net, key, 5)
    net.tick()
    buyer.withdraw("1")
    link = settlement.require_chain(net.rt)
    with net.rt.engine.begin() as conn:
        pending = settlement.close_epoch(conn, link, net.clock())
    assert pending is not None
    buyer.withdraw("2")
    net.tick()  # not due yet: only the pending epoch is finished
    posted = link.client.root_posted(1)
    assert posted is not None and "0x" + posted.root.hex() == pending.root
    assert buyer.chain_proof()["cumulative"] == str(UNIT)


def test_a_vault_short_of_the_books_halts_settlement_until_they_agree(net: Net) -> None:
    buyer, key = net.client()
    deposit(net, key, 5)
    net.tick()
    buyer.withdraw("1")
    net.epoch()
    assert net.chain.vault_state().epoch == 1
    # an off-chain credit the vault does not back (a bug, or a tampered database)
    with net.rt.engine.begin() as conn:
        store.apply(conn, ledger.deposit(buyer.address, 7 * UNIT, ref="tamper"), net.clock())
    buyer.withdraw("1")
    net.epoch()
    status = net.status()
    assert status["halted"] and "short by" in status["halted"]["reason"]
    assert not status["reconciliation"]["ok"]
    assert net.chain.vault_state().epoch == 1  # no root posted while halted
    net.epoch()
    assert net.chain.vault_state().epoch == 1
    # the books are put right: settlement resumes by itself at the next epoch
    with net.rt.engine.begin() as conn:
        bals = store.lock_balances(conn, [ledger.available_account(buyer.address)])
        acct = ledger.available_account(buyer.address)
        store.apply(conn, ledger.withdraw(bals, acct, 7 * UNIT, ref="untamper"), net.clock())
    net.epoch()
    assert net.status()["halted"] is None
    assert net.chain.vault_state().epoch == 2


@pytest.mark.parametrize("net", ["sqlite"], indirect=True)  # no SQL of its own
def test_off_chain_faucet_is_refused_and_the_chain_faucet_is_local_only(net: Net) -> None:
    buyer, _ = net.client()
    with pytest.raises(Forbidden, match="settles on chain"):
        buyer.faucet("5")
    out = buyer.chain_faucet("5")
    assert out["minted"] == "5" and net.chain.balance_of(buyer.address) == 5 * UNIT
    assert net.chain.eth_balance(buyer.address) > 0


def test_the_duty_survives_a_chain_node_restart_and_reconnects(tmp_path: Path) -> None:
    from gpudepin.chain.client import ChainClient
    from gpudepin.chain.config import deploy

    with AnvilNode(tmp_path / "chain" / "state.json", state_interval_s=1) as node:
        chain = ChainClient(node.rpc_url)
        deploy(chain, tmp_path)
        clock = Clock()
        app = start(tmp_path, node.rpc_url, clock)
        with TestClient(app):
            rt = app.state.rt
            key = "0x" + bytes(Account.create().key).hex()
            link = settlement.require_chain(rt)
            chain.faucet_mint(link.minter_key, chain.address_of(key), 4 * UNIT)
            node.stop()
            loops.tick(rt)  # the node is down: the pass is postponed, not crashed
            node.start()
            chain.deposit(key, 4 * UNIT)
            loops.tick(rt)
            with rt.engine.connect() as conn:
                bal = store.balances_for(conn, [ledger.available_account(chain.address_of(key))])
            assert list(bal.values()) == [4 * UNIT]
